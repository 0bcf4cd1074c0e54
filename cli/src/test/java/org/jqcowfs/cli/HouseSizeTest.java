package org.jqcowfs.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import java.util.stream.Collectors;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;

/**
 * The house stays easy to see, and the build says so (issue 40): no main class over 450 lines, no
 * main package over 15 files, a README of at most 200 lines. Counted on the sources of every module
 * beside this one.
 */
class HouseSizeTest {
  private static final int MAX_CLASS_LINES = 450;
  private static final int MAX_PACKAGE_FILES = 15;
  private static final int MAX_README_LINES = 200;

  /** The project's root: the parent of this module's directory, where the test runs. */
  private static Path root() {
    Path root = Path.of("").toAbsolutePath().getParent();
    assertTrue(Files.isRegularFile(root.resolve("pom.xml")), "no pom.xml in " + root);
    return root;
  }

  private static List<Path> mainSources() throws IOException {
    List<Path> sources = new ArrayList<>();
    try (Stream<Path> modules = Files.list(root())) {
      for (Path module : modules.sorted().toList()) {
        Path main = module.resolve("src/main/java");
        if (Files.isDirectory(main)) {
          try (Stream<Path> files = Files.walk(main)) {
            files.filter(p -> p.toString().endsWith(".java")).forEach(sources::add);
          }
        }
      }
    }
    assertTrue(sources.size() > 100, "found only " + sources.size() + " main sources");
    return sources;
  }

  @Test
  void noMainClassIsOver450Lines() throws IOException {
    Map<String, Long> over = new TreeMap<>();
    for (Path p : mainSources()) {
      long lines;
      try (Stream<String> s = Files.lines(p)) {
        lines = s.count();
      }
      if (lines > MAX_CLASS_LINES) {
        over.put(root().relativize(p).toString(), lines);
      }
    }
    assertEquals(Map.of(), over);
  }

  @Test
  void noMainPackageHoldsOver15Files() throws IOException {
    Map<String, Long> perPackage =
        mainSources().stream()
            .collect(
                Collectors.groupingBy(
                    p -> root().relativize(p.getParent()).toString(),
                    TreeMap::new,
                    Collectors.counting()));
    perPackage.values().removeIf(n -> n <= MAX_PACKAGE_FILES);
    assertEquals(Map.of(), perPackage);
  }

  @Test
  void theReadmeHasAtMost200Lines() throws IOException {
    long lines;
    try (Stream<String> s = Files.lines(root().resolve("README.md"))) {
      lines = s.count();
    }
    assertTrue(lines <= MAX_README_LINES, "README.md has " + lines + " lines");
  }
}
