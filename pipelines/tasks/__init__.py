"""Tasks as data: each module defines one TaskSpec; `registry.TASKS` lists them all."""
