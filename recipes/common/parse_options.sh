# Sourced by the recipes after their defaults (Kaldi's utils/parse_options.sh pattern): every
# lower-case variable already set is an option (never PATH or another environment variable).
# `--name value` or `--name=value` sets it (dashes in the name read as underscores); an unknown
# name, a missing value or a positional argument stops the script with exit code 2, naming it. A
# script that declares the array `other_options=()` gets the unknown options there instead, as given
# (a wrapper passes them on to the script it wraps, which names what neither knows).
# Example:
#   stage=0; . "$(dirname "$0")/../common/parse_options.sh"   # ./run.sh --stage 4
while [ $# -gt 0 ]; do
  case $1 in
    --*=*) _opt=${1%%=*} _val=${1#*=} _raw=("$1"); shift ;;
    --?*) [ $# -ge 2 ] || { echo "$0: option $1 needs a value" >&2; exit 2; }
      _opt=$1 _val=$2 _raw=("$1" "$2"); shift 2 ;;
    *) echo "$0: unexpected argument '$1' (options: --name value)" >&2; exit 2 ;;
  esac
  _opt=${_opt#--}; _opt=${_opt//-/_}
  if [[ $_opt =~ ^[a-z_][a-z0-9_]*$ ]] && [ "$_opt" != other_options ] && declare -p "$_opt" >/dev/null 2>&1; then
    printf -v "$_opt" '%s' "$_val"
  elif declare -p other_options >/dev/null 2>&1; then
    other_options+=("${_raw[@]}")
  else
    echo "$0: unknown option --$_opt" >&2; exit 2
  fi
done
unset _opt _val _raw
