/**
 * Chain operations as {@code qemu-img} runs them over opened chains: compare, rebase (and, next,
 * commit, resize, snapshots, amend, measure). Each is a library call the cli's commands wrap; the
 * messages and exit codes are the cli's.
 */
package org.jqcowfs.chainops;
