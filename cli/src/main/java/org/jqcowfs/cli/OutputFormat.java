package org.jqcowfs.cli;

import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.core.util.DefaultIndenter;
import com.fasterxml.jackson.core.util.DefaultPrettyPrinter;
import com.fasterxml.jackson.core.util.Separators;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;

/** The {@code --output} choices, as qemu-img's. */
public enum OutputFormat {
  human,
  json;

  /** {@code node} as qemu-img prints JSON: four-space indents, {@code "key": value}. */
  static String qemuStyle(ObjectMapper json, JsonNode node) throws JsonProcessingException {
    DefaultPrettyPrinter pp =
        new DefaultPrettyPrinter()
            .withObjectIndenter(new DefaultIndenter("    ", "\n"))
            .withArrayIndenter(new DefaultIndenter("    ", "\n"))
            .withSeparators(
                Separators.createDefaultInstance()
                    .withObjectFieldValueSpacing(Separators.Spacing.AFTER));
    return json.writer(pp).writeValueAsString(node);
  }
}
