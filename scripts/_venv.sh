# Sourced by scripts/demo and scripts/test: create or reuse .venv and install the project.
# Usage: venv_setup [EXTRAS]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${ALERTMESH_VENV:-$ROOT/.venv}"

venv_setup() {
  local extras="${1:-}"
  local py="${PYTHON:-}"
  if [ -z "$py" ]; then
    for candidate in python3.11 python3.12 python3.13 python3; do
      if command -v "$candidate" >/dev/null 2>&1; then py="$candidate"; break; fi
    done
  fi
  [ -n "$py" ] || { echo "error: Python 3.11+ not found" >&2; exit 2; }
  if [ ! -x "$VENV/bin/python" ]; then
    echo "creating virtual environment in $VENV" >&2
    "$py" -m venv "$VENV"
  fi
  local spec="$ROOT"
  [ -n "$extras" ] && spec="$ROOT[$extras]"
  # Reinstall only when pyproject.toml changed since the last install.
  local stamp="$VENV/.alertmesh-installed-$extras"
  if [ ! -f "$stamp" ] || [ "$ROOT/pyproject.toml" -nt "$stamp" ]; then
    echo "installing alertmesh${extras:+[$extras]} into $VENV (log: $VENV/install.log)" >&2
    if ! { "$VENV/bin/python" -m pip install --upgrade pip &&
           "$VENV/bin/python" -m pip install -e "$spec"; } >"$VENV/install.log" 2>&1; then
      tail -n 40 "$VENV/install.log" >&2
      echo "error: installing the project failed; see $VENV/install.log" >&2
      exit 2
    fi
    touch "$stamp"
  fi
  export PATH="$VENV/bin:$PATH"
}
