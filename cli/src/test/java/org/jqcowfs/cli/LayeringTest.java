package org.jqcowfs.cli;

import static com.tngtech.archunit.lang.syntax.ArchRuleDefinition.noClasses;
import static com.tngtech.archunit.library.Architectures.layeredArchitecture;

import com.tngtech.archunit.core.domain.JavaClasses;
import com.tngtech.archunit.core.importer.ClassFileImporter;
import com.tngtech.archunit.core.importer.ImportOption;
import org.junit.jupiter.api.Test;

/**
 * The data flows one way, and the build says so: cli -> fuse -> backing-chain (chain, convert) ->
 * qcow2, no package reaching up; the qcow2 format types do no I/O. Checked on the main classes of
 * every module (this module's test class path holds them all).
 */
class LayeringTest {
  private static final JavaClasses CLASSES =
      new ClassFileImporter()
          .withImportOption(ImportOption.Predefined.DO_NOT_INCLUDE_TESTS)
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
        .layer("chain")
        .definedBy("org.jqcowfs.chain..")
        .layer("qcow2")
        .definedBy("org.jqcowfs.qcow2..")
        .whereLayer("cli")
        .mayNotBeAccessedByAnyLayer()
        .whereLayer("fuse")
        .mayOnlyBeAccessedByLayers("cli")
        .whereLayer("convert")
        .mayOnlyBeAccessedByLayers("cli")
        .whereLayer("chain")
        .mayOnlyBeAccessedByLayers("cli", "fuse", "convert")
        .whereLayer("qcow2")
        .mayOnlyBeAccessedByLayers("cli", "fuse", "convert", "chain")
        .check(CLASSES);
  }

  @Test
  void theFormatTypesDoNoIo() {
    noClasses()
        .that()
        .haveSimpleNameStartingWith("Geometry")
        .or()
        .haveSimpleNameStartingWith("L2Entry")
        .or()
        .haveSimpleNameStartingWith("SubclusterType")
        .should()
        .dependOnClassesThat()
        .resideInAnyPackage("java.io..", "java.nio.channels..", "java.nio.file..")
        .orShould()
        .dependOnClassesThat()
        .haveSimpleNameStartingWith("HostFile")
        .check(CLASSES);
  }
}
