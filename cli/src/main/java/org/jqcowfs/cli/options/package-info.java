/**
 * What the commands of {@code org.jqcowfs.cli} and its subpackages share: the options every command
 * that opens images has, byte counts, error lines.
 */
package org.jqcowfs.cli.options;
