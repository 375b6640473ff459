# Sourced by scripts/up and scripts/test: a project venv in .venv with batchgate installed.
# BATCHGATE_EXTRAS selects extras ("dev" for the tests); reinstalls only when pyproject changes.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv="$root/.venv"
python=${PYTHON:-python3}
if [ ! -x "$venv/bin/python" ]; then
    "$python" -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --upgrade pip
fi
extras=${BATCHGATE_EXTRAS:-}
spec="$root"
[ -n "$extras" ] && spec="$root[$extras]"
stamp="$venv/.installed-${extras:-base}"
if [ ! -f "$stamp" ] || [ "$root/pyproject.toml" -nt "$stamp" ]; then
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -e "$spec"
    touch "$stamp"
fi
export PATH="$venv/bin:$PATH"
