#!/usr/bin/env bash
# make-docs.sh GEN: roff man pages from the AsciiDoc that picocli's ManPageGenerator wrote into
# GEN/adoc (asciidoctor, Debian's package), gzipped into GEN/man; and the zsh completion, picocli's
# bash script behind zsh's bashcompinit, into GEN/completion/_jqcowfs.
set -euo pipefail
gen=$1
command -v asciidoctor >/dev/null || { echo "make-docs.sh: asciidoctor is missing (make deps)" >&2; exit 1; }
rm -rf "$gen/man"; mkdir -p "$gen/man"
asciidoctor -b manpage -D "$gen/man" "$gen"/adoc/*.adoc
gzip -9nf "$gen"/man/*.1
{
  echo '#compdef jqcowfs'
  echo '# picocli'"'"'s bash completion of jqcowfs, through zsh'"'"'s bash compatibility'
  echo 'autoload -U +X bashcompinit && bashcompinit'
  echo 'source /usr/share/bash-completion/completions/jqcowfs'
  echo '_bash_complete -F _complete_jqcowfs "$@"'
} > "$gen/completion/_jqcowfs"
