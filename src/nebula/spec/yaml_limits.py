"""How much one YAML file may hold.

Generous for any homelab, small enough that a hostile or broken file (an alias bomb, nesting
thousands deep, a huge generated file) is refused in milliseconds instead of exhausting memory,
time or the stack. `yamlfile` applies them as it reads.
"""

from __future__ import annotations

from nebula.paths import MAX_FILE_BYTES

MAX_CHARS = MAX_FILE_BYTES  # a file's text: as much as Nebula reads of any config file
MAX_DEPTH = 100  # mappings and lists inside one another
MAX_NODES = 250_000  # values in a file, each alias counted as the values it repeats
MAX_ALIASES = 10_000  # `*name` references in a file

TOO_LARGE = f"the file is over {MAX_CHARS // 1024:,} KiB"
TOO_DEEP = f"nested more than {MAX_DEPTH} levels deep"
TOO_MANY_NODES = f"more than {MAX_NODES:,} values (each alias counts as the values it repeats)"
TOO_MANY_ALIASES = f"more than {MAX_ALIASES:,} aliases"
