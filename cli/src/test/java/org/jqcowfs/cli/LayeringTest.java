package org.jqcowfs.cli;

import static com.tngtech.archunit.core.domain.JavaClass.Predicates.resideInAPackage;
import static com.tngtech.archunit.core.domain.JavaClass.Predicates.resideOutsideOfPackage;
import static com.tngtech.archunit.lang.syntax.ArchRuleDefinition.noClasses;
import static com.tngtech.archunit.library.Architectures.layeredArchitecture;
import static com.tngtech.archunit.library.dependencies.SlicesRuleDefinition.slices;

import com.tngtech.archunit.core.domain.JavaClasses;
import com.tngtech.archunit.core.importer.ClassFileImporter;
import com.tngtech.archunit.core.importer.ImportOption;
import org.junit.jupiter.api.Test;

/**
 * The data flows one way, and the build says so: cli -> fuse -> read-ahead -> chain -> qcow2 and
 * raw -> the format, compression, image contract, local I/O and storage packages below them, no
 * package reaching up and no cycle between packages (docs/architecture.md); the qcow2 format
 * package does no I/O; the image contract and the storage interface name no implementation; the
 * qcow2 write side reads through its narrow reader, not through {@code Qcow2Image}. Checked on the
 * main classes of every module (this module's test class path holds them all).
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
        .layer("chainops")
        .definedBy("org.jqcowfs.chainops..")
        .layer("readahead")
        .definedBy("org.jqcowfs.readahead..")
        .layer("chain")
        .definedBy("org.jqcowfs.chain..")
        .layer("raw")
        .definedBy("org.jqcowfs.raw..")
        .layer("qcow2")
        .definedBy("org.jqcowfs.qcow2")
        .layer("write")
        .definedBy("org.jqcowfs.qcow2.write..")
        .layer("metadata")
        .definedBy("org.jqcowfs.qcow2.metadata..")
        .layer("compress")
        .definedBy("org.jqcowfs.qcow2.compress..")
        .layer("crypto")
        .definedBy("org.jqcowfs.qcow2.crypto..")
        .layer("format")
        .definedBy("org.jqcowfs.qcow2.format..")
        .layer("image")
        .definedBy("org.jqcowfs.image..")
        .layer("remote")
        .definedBy("org.jqcowfs.remote..")
        .layer("io")
        .definedBy("org.jqcowfs.io..")
        .layer("storage")
        .definedBy("org.jqcowfs.storage..")
        .whereLayer("cli")
        .mayNotBeAccessedByAnyLayer()
        .whereLayer("fuse")
        .mayOnlyBeAccessedByLayers("cli")
        .whereLayer("convert")
        .mayOnlyBeAccessedByLayers("cli")
        .whereLayer("chainops")
        .mayOnlyBeAccessedByLayers("cli")
        .whereLayer("readahead")
        .mayOnlyBeAccessedByLayers("cli", "fuse")
        .whereLayer("chain")
        .mayOnlyBeAccessedByLayers("cli", "fuse", "convert", "chainops")
        .whereLayer("raw")
        .mayOnlyBeAccessedByLayers("cli", "chain")
        .whereLayer("qcow2")
        .mayOnlyBeAccessedByLayers("cli", "chain", "chainops", "convert")
        .whereLayer("write")
        .mayOnlyBeAccessedByLayers("qcow2")
        .whereLayer("metadata")
        .mayOnlyBeAccessedByLayers("chain", "qcow2", "write")
        .whereLayer("compress")
        .mayOnlyBeAccessedByLayers("qcow2", "write")
        .whereLayer("crypto") // cli: create's encrypt.* options and info's LUKS facts
        .mayOnlyBeAccessedByLayers("cli", "qcow2", "write", "metadata")
        .whereLayer("format")
        .mayOnlyBeAccessedByLayers(
            "cli", "convert", "chainops", "chain", "qcow2", "write", "metadata")
        .whereLayer("image")
        .mayOnlyBeAccessedByLayers(
            "cli",
            "fuse",
            "convert",
            "chainops",
            "readahead",
            "chain",
            "raw",
            "qcow2",
            "write",
            "metadata",
            "format")
        .whereLayer("remote")
        .mayOnlyBeAccessedByLayers("cli")
        .whereLayer("io")
        .mayOnlyBeAccessedByLayers(
            "cli",
            "fuse",
            "convert",
            "chainops",
            "readahead",
            "chain",
            "raw",
            "qcow2",
            "write",
            "metadata",
            "compress",
            "crypto",
            "image")
        .whereLayer("storage")
        .mayOnlyBeAccessedByLayers(
            "cli",
            "fuse",
            "convert",
            "chainops",
            "readahead",
            "chain",
            "raw",
            "qcow2",
            "write",
            "metadata",
            "compress",
            "format",
            "image",
            "remote",
            "io")
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
  void theImageContractKnowsNoFormatAndNoStorageImplementation() {
    noClasses()
        .that()
        .resideInAPackage("org.jqcowfs.image..")
        .should()
        .dependOnClassesThat()
        .resideInAnyPackage(
            "org.jqcowfs.qcow2..", "org.jqcowfs.raw..", "org.jqcowfs.chain..", "org.jqcowfs.io..")
        .check(CLASSES);
  }

  @Test
  void theStorageInterfaceDependsOnNothingElseOfTheProject() {
    noClasses()
        .that()
        .resideInAPackage("org.jqcowfs.storage..")
        .should()
        .dependOnClassesThat(
            resideInAPackage("org.jqcowfs..").and(resideOutsideOfPackage("org.jqcowfs.storage..")))
        .check(CLASSES);
  }

  @Test
  void theQcow2WriteSideDoesNotDependOnQcow2Image() {
    noClasses()
        .that()
        .resideInAPackage("org.jqcowfs.qcow2.write..")
        .should()
        .dependOnClassesThat()
        .resideInAPackage("org.jqcowfs.qcow2")
        .check(CLASSES);
  }

  @Test
  void theFuseProtocolDependsOnNothingElseOfTheProject() {
    noClasses()
        .that()
        .resideInAPackage("org.jqcowfs.fuse.protocol..")
        .should()
        .dependOnClassesThat(
            resideInAPackage("org.jqcowfs..")
                .and(resideOutsideOfPackage("org.jqcowfs.fuse.protocol..")))
        .check(CLASSES);
  }

  @Test
  void theFilesystemKnowsNoTransport() {
    noClasses()
        .that()
        .resideInAPackage("org.jqcowfs.fuse.filesystem..")
        .should()
        .dependOnClassesThat()
        .resideInAPackage("org.jqcowfs.fuse.transport..")
        .check(CLASSES);
  }

  @Test
  void noCyclesBetweenPackages() {
    slices().matching("org.jqcowfs.(**)").should().beFreeOfCycles().check(CLASSES);
  }
}
