# The tested combinations of Python and Django (sourced by bootstrap.sh and test.sh); tox.ini
# lists the same ones. The first is the main combination: the newest Django on the newest
# Python, in .venv, tested on every database and linted; the others run the SQLite suite.
# shellcheck shell=bash
MATRIX_ALL="py313-django61 py313-django60 py312-django61 py312-django60 py311-django52"
MATRIX_MAIN=py313-django61

# The combinations to prepare and test: ASHERAH_MATRIX (default all; "main" = the main one).
matrix_combos() {
  local chosen=${ASHERAH_MATRIX:-$MATRIX_ALL}
  [ "$chosen" = main ] && chosen=$MATRIX_MAIN
  local combo
  for combo in $chosen; do
    case " $MATRIX_ALL " in
      *" $combo "*) echo "$combo" ;;
      *) echo "matrix: unknown combination '$combo' (known: $MATRIX_ALL)" >&2; return 2 ;;
    esac
  done
}

combo_python() { local v=${1#py}; v=${v%%-*}; echo "${v:0:1}.${v:1}"; }  # py313-... -> 3.13
combo_django() { local v=${1#*-django}; echo "${v:0:1}.${v:1}"; }        # ...-django61 -> 6.1
combo_venv() { if [ "$1" = "$MATRIX_MAIN" ]; then echo .venv; else echo ".venv-$1"; fi; }

# The interpreter for Python X.Y: PYTHON_X_Y if set, else pythonX.Y on PATH, else the newest
# pyenv X.Y.*. Missing: says which and how to get it, and fails.
python_of() {
  local version=$1 var candidate
  var="PYTHON_${version/./_}"
  local -a candidates=()
  [ -n "${!var:-}" ] && candidates+=("${!var}")
  candidates+=("python$version")
  if command -v pyenv >/dev/null; then
    local root
    root=$(pyenv root)
    candidates+=($(ls -d "$root/versions/$version".* 2>/dev/null | sort -V -r | sed 's|$|/bin/python|'))
  fi
  for candidate in "${candidates[@]}"; do
    if "$candidate" -c "import sys, ssl, venv; sys.exit(sys.version_info[:2] != (${version/./, }))" \
      >/dev/null 2>&1; then
      command -v "$candidate"
      return 0
    fi
  done
  echo "matrix: Python $version is needed (the suite runs on Python 3.11, 3.12 and 3.13)" \
    "but was not found: install it (\`pyenv install $version\`, or your distribution's" \
    "python$version with its venv module), or point PYTHON_${version/./_} at it" >&2
  return 1
}
