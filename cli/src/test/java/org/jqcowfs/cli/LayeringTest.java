package org.jqcowfs.cli;

import static com.tngtech.archunit.lang.syntax.ArchRuleDefinition.noClasses;
import static com.tngtech.archunit.library.Architectures.layeredArchitecture;

import com.tngtech.archunit.core.domain.JavaClasses;
import com.tngtech.archunit.core.importer.ClassFileImporter;
import com.tngtech.archunit.core.importer.ImportOption;
import org.junit.jupiter.api.Test;

/**
 * The data flows one way, and the build says so: cli -> fuse -> read-ahead -> chain -> qcow2 and
 * raw -> the format, compression, image contract and host I/O packages below them, no package
 * reaching up (docs/architecture.md); the qcow2 format package does no I/O. Checked on the main
 * classes of every module (this module's test class path holds them all).
 */
class LayeringTest {
  private static final JavaClasses CLASSES =
      new ClassFileImporter()
          .withImportOption(ImportOption.Predefined.DO_NOT_INCLUDE_TESTS)
          .withImportOption(location -> !location.contains("-tests.jar")) // modules' test jars
          .importPackages("org.jqcowfs");

  @Test
  void packagesDependOnlyDownward() {
    layeredArchitecture()
        .consideringOnlyDependenciesInLayers()
        .layer("cli")
        .definedBy("org.jqcowfs.cli..")
        .layer("fuse")
        .definedBy("org.jqcowfs.fuse..")
        .layer("convert")
        .definedBy("org.jqcowfs.convert..")
        .layer("readahead")
        .definedBy("org.jqcowfs.readahead..")
        .layer("chain")
        .definedBy("org.jqcowfs.chain..")
        .layer("raw")
        .definedBy("org.jqcowfs.raw..")
        .layer("qcow2")
        .definedBy("org.jqcowfs.qcow2")
        .layer("compress")
        .definedBy("org.jqcowfs.qcow2.compress..")
        .layer("format")
        .definedBy("org.jqcowfs.qcow2.format..")
        .layer("image")
        .definedBy("org.jqcowfs.image..")
        .layer("io")
        .definedBy("org.jqcowfs.io..")
        .whereLayer("cli")
        .mayNotBeAccessedByAnyLayer()
        .whereLayer("fuse")
        .mayOnlyBeAccessedByLayers("cli")
        .whereLayer("convert")
        .mayOnlyBeAccessedByLayers("cli")
        .whereLayer("readahead")
        .mayOnlyBeAccessedByLayers("cli", "fuse")
        .whereLayer("chain")
        .mayOnlyBeAccessedByLayers("cli", "fuse", "convert")
        .whereLayer("raw")
        .mayOnlyBeAccessedByLayers("cli", "chain")
        .whereLayer("qcow2")
        .mayOnlyBeAccessedByLayers("cli", "chain")
        .whereLayer("compress")
        .mayOnlyBeAccessedByLayers("qcow2")
        .whereLayer("format")
        .mayOnlyBeAccessedByLayers("cli", "chain", "qcow2")
        .whereLayer("image")
        .mayOnlyBeAccessedByLayers(
            "cli", "fuse", "convert", "readahead", "chain", "raw", "qcow2", "format")
        .whereLayer("io")
        .mayOnlyBeAccessedByLayers(
            "cli", "fuse", "convert", "readahead", "chain", "raw", "qcow2", "compress", "image")
        .check(CLASSES);
  }

  @Test
  void theFormatPackageDoesNoIo() {
    noClasses()
        .that()
        .resideInAPackage("org.jqcowfs.qcow2.format..")
        .should()
        .dependOnClassesThat()
        .resideInAnyPackage("org.jqcowfs.io..", "java.nio.channels..")
        .orShould()
        .dependOnClassesThat()
        .haveFullyQualifiedName("java.nio.file.Files")
        .orShould()
        .dependOnClassesThat()
        .haveFullyQualifiedName("java.io.RandomAccessFile")
        .orShould()
        .dependOnClassesThat()
        .haveFullyQualifiedName("java.io.FileInputStream")
        .check(CLASSES);
  }

  @Test
  void theImageContractKnowsNoFormat() {
    noClasses()
        .that()
        .resideInAPackage("org.jqcowfs.image..")
        .should()
        .dependOnClassesThat()
        .resideInAnyPackage("org.jqcowfs.qcow2..", "org.jqcowfs.raw..", "org.jqcowfs.chain..")
        .check(CLASSES);
  }
}
