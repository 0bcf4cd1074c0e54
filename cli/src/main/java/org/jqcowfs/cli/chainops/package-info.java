/**
 * The chain operations' commands ({@code compare}, {@code rebase}), with {@code qemu-img}'s syntax,
 * messages and exit codes, over {@link org.jqcowfs.chainops}.
 */
package org.jqcowfs.cli.chainops;
