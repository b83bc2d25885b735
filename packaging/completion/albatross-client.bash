# bash completion for albatross-client and vmmc (albatross-py)
# Installed as /usr/share/bash-completion/completions/albatross-client (and vmmc).
# A static list: the subcommands and options of albatross 2.7.2 (spec 7).

_albatross_client() {
  local cur prev words cword
  if declare -F _init_completion >/dev/null; then
    _init_completion -n : || return
  else
    cur=${COMP_WORDS[COMP_CWORD]}
    prev=${COMP_WORDS[COMP_CWORD-1]}
    words=("${COMP_WORDS[@]}")
    cword=$COMP_CWORD
  fi

  local subcommands="create destroy restart info get update policy add-policy replace-policy
    remove-policy block create-block set-block dump-block destroy-block console
    inactive-consoles stats stats-add stats-remove inspect-dump extract-dump certificate
    sign generate revoke log help"
  local global="--socket --destination -d --csr --ca --ca-key --server-ca --key-type
    --tmpdir --compression-level --json -v --verbose -q --quiet --verbosity --color --help"

  # the subcommand is the first word that is not an option (or an option's value)
  local i sub=""
  for ((i = 1; i < cword; i++)); do
    case ${words[i]} in
      --socket|--destination|-d|--ca|--ca-key|--server-ca|--key-type|--tmpdir|\
      --compression-level|--verbosity|--color|--name|-n|--path|-p|--file|--dbdir|\
      --mem|--cpu|--cpus|--arg|--block|--net|--network|--bridge|--size|--typ|\
      --startup|--exit-code|--linux-boot|--since|--count|--data|--days|--server|\
      --server-days|--http-host|--vmmdev|--crl) ((i++)) ;;
      -*) ;;
      *) sub=${words[i]}; break ;;
    esac
  done

  case $prev in
    --socket|--ca|--ca-key|--server-ca|--file|--data|--crl)
      COMPREPLY=($(compgen -f -- "$cur")); return ;;
    --tmpdir|--dbdir)
      COMPREPLY=($(compgen -d -- "$cur")); return ;;
    --key-type)
      COMPREPLY=($(compgen -W "rsa2048 rsa4096 ed25519 p256 p384 p521" -- "$cur")); return ;;
    --typ)
      COMPREPLY=($(compgen -W "solo5 bhyve qemu" -- "$cur")); return ;;
    --color)
      COMPREPLY=($(compgen -W "auto always never" -- "$cur")); return ;;
    --verbosity)
      COMPREPLY=($(compgen -W "quiet error warning info debug" -- "$cur")); return ;;
  esac

  if [ -z "$sub" ]; then
    if [[ $cur == -* ]]; then
      COMPREPLY=($(compgen -W "$global" -- "$cur"))
    else
      COMPREPLY=($(compgen -W "$subcommands" -- "$cur"))
    fi
    return
  fi

  local opts=""
  local config="--cpu --mem --arg --block --net --restart-on-fail --exit-code --cpus
    --linux-boot --startup --no-add-name"
  case $sub in
    create) opts="--typ -f --force --compression-level $config" ;;
    restart) opts="--replace-arguments $config" ;;
    info|stats|stats-remove|block) opts="-n --name" ;;
    stats-add) opts="-n --name --vmmdev --bridge" ;;
    get|dump-block|set-block) opts="--compression-level" ;;
    update) opts="--http-host --dryrun --dry-run --compression-level" ;;
    policy|remove-policy|inactive-consoles) opts="-p --path" ;;
    add-policy|replace-policy) opts="--mem --cpu --block --size --network --bridge" ;;
    create-block) opts="--data --compression-level" ;;
    console) opts="--since --count" ;;
    inspect-dump) opts="--file --dbdir" ;;
    extract-dump) opts="--file --dbdir" ;;
    sign) opts="--days" ;;
    generate) opts="--days --server --server-days --key-type" ;;
    revoke) opts="--crl --days" ;;
  esac
  if [[ $cur == -* ]]; then
    COMPREPLY=($(compgen -W "$opts $global" -- "$cur"))
  else
    case $sub in
      create|set-block|certificate|sign|generate|revoke) COMPREPLY=($(compgen -f -- "$cur")) ;;
    esac
  fi
}

complete -F _albatross_client albatross-client vmmc
