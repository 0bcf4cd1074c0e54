package org.jqcowfs.qcow2;

import org.jqcowfs.qcow2.format.L2Entry;
import org.jqcowfs.qcow2.format.SubclusterType;

/**
 * A read mapping: a run of guest bytes with one subcluster type inside one L2 table, or,
 * unallocated, across L1 entries that map no L2 table; for {@link SubclusterType#NORMAL} runs the
 * host bytes are contiguous.
 *
 * @param length bytes, {@code >= 1}
 * @param type never INVALID
 * @param hostOffset host offset of the run's first byte when {@code type.hasHostOffset()}, else -1
 * @param entry the L2 entry of the run's first cluster (null when no L2 table maps it)
 * @param l1Index L1 index of the run
 * @param l2Index L2 index of the run's first cluster
 */
record Mapping(
    long guestOffset,
    long length,
    SubclusterType type,
    long hostOffset,
    L2Entry entry,
    long l1Index,
    int l2Index) {}
