# bash completion for albatross-client and vmmc (albatross-py 0.1.0)
# Installed as /usr/share/bash-completion/completions/albatross-client (and vmmc).
# Generated from the argument parser: python -m albatross_py.client.docgen write
# (do not edit; tests/unit/test_docgen.py checks that it is current).

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
  local commands="create destroy remove restart info stats block get update policy remove-policy remove_policy inactive-consoles inactive_consoles add-policy add_policy replace-policy create-block create_block set-block set_block dump-block dump_block destroy-block destroy_block console stats-add stats_add stats-remove stats_remove log inspect-dump inspect_dump extract-dump extract_dump certificate sign generate revoke help"
  # the subcommand is the first word that is not an option
  local i sub=""
  for ((i = 1; i < cword; i++)); do
    case ${words[i]} in -*) ;; *) sub=${words[i]}; break ;; esac
  done
  if [ -z "$sub" ]; then
    if [[ $cur == -* ]]; then
      COMPREPLY=($(compgen -W "-h --help --version" -- "$cur"))
    else
      COMPREPLY=($(compgen -W "$commands" -- "$cur"))
    fi
    return
  fi
  local opts="" valued="" files=""
  case $sub in
    create) opts="-h --help --json -v --verbose -q --quiet --verbosity --color --socket -d --destination --csr --tmpdir --ca --ca-key --server-ca --key-type --typ -f --force --startup --no-add-name --cpu --mem --arg --block --net --restart-on-fail --restart --exit-code --cpus --linux-boot --compression-level"
      valued="--verbosity --color --socket -d --destination --tmpdir --ca --ca-key --server-ca --key-type --typ --startup --cpu --mem --arg --block --net --exit-code --cpus --linux-boot --compression-level" files=1 ;;
    destroy|remove) opts="-h --help --json -v --verbose -q --quiet --verbosity --color --socket -d --destination --csr --tmpdir --ca --ca-key --server-ca --key-type"
      valued="--verbosity --color --socket -d --destination --tmpdir --ca --ca-key --server-ca --key-type" ;;
    restart) opts="-h --help --json -v --verbose -q --quiet --verbosity --color --socket -d --destination --csr --tmpdir --ca --ca-key --server-ca --key-type --replace-arguments --startup --no-add-name --cpu --mem --arg --block --net --restart-on-fail --restart --exit-code --cpus --linux-boot"
      valued="--verbosity --color --socket -d --destination --tmpdir --ca --ca-key --server-ca --key-type --startup --cpu --mem --arg --block --net --exit-code --cpus --linux-boot" ;;
    info) opts="-h --help --json -v --verbose -q --quiet --verbosity --color --socket -d --destination --csr --tmpdir --ca --ca-key --server-ca --key-type -n --name"
      valued="--verbosity --color --socket -d --destination --tmpdir --ca --ca-key --server-ca --key-type -n --name" ;;
    stats) opts="-h --help --json -v --verbose -q --quiet --verbosity --color --socket -d --destination --csr --tmpdir --ca --ca-key --server-ca --key-type -n --name"
      valued="--verbosity --color --socket -d --destination --tmpdir --ca --ca-key --server-ca --key-type -n --name" ;;
    block) opts="-h --help --json -v --verbose -q --quiet --verbosity --color --socket -d --destination --csr --tmpdir --ca --ca-key --server-ca --key-type -n --name"
      valued="--verbosity --color --socket -d --destination --tmpdir --ca --ca-key --server-ca --key-type -n --name" ;;
    get) opts="-h --help --json -v --verbose -q --quiet --verbosity --color --socket -d --destination --csr --tmpdir --ca --ca-key --server-ca --key-type -o --output --compression-level"
      valued="--verbosity --color --socket -d --destination --tmpdir --ca --ca-key --server-ca --key-type -o --output --compression-level" ;;
    update) opts="-h --help --json -v --verbose -q --quiet --verbosity --color --socket -d --destination --csr --tmpdir --ca --ca-key --server-ca --key-type --http-host --dryrun --dry-run --compression-level"
      valued="--verbosity --color --socket -d --destination --tmpdir --ca --ca-key --server-ca --key-type --http-host --compression-level" ;;
    policy) opts="-h --help --json -v --verbose -q --quiet --verbosity --color --socket -d --destination --csr --tmpdir --ca --ca-key --server-ca --key-type -p --path"
      valued="--verbosity --color --socket -d --destination --tmpdir --ca --ca-key --server-ca --key-type -p --path" ;;
    remove-policy|remove_policy) opts="-h --help --json -v --verbose -q --quiet --verbosity --color --socket -d --destination --csr --tmpdir --ca --ca-key --server-ca --key-type -p --path"
      valued="--verbosity --color --socket -d --destination --tmpdir --ca --ca-key --server-ca --key-type -p --path" ;;
    inactive-consoles|inactive_consoles) opts="-h --help --json -v --verbose -q --quiet --verbosity --color --socket -d --destination --csr --tmpdir --ca --ca-key --server-ca --key-type -p --path"
      valued="--verbosity --color --socket -d --destination --tmpdir --ca --ca-key --server-ca --key-type -p --path" ;;
    add-policy|add_policy) opts="-h --help --json -v --verbose -q --quiet --verbosity --color --socket -d --destination --csr --tmpdir --ca --ca-key --server-ca --key-type --mem --cpu --block --size --network --bridge"
      valued="--verbosity --color --socket -d --destination --tmpdir --ca --ca-key --server-ca --key-type --mem --cpu --block --size --network --bridge" ;;
    replace-policy) opts="-h --help --json -v --verbose -q --quiet --verbosity --color --socket -d --destination --csr --tmpdir --ca --ca-key --server-ca --key-type --mem --cpu --block --size --network --bridge"
      valued="--verbosity --color --socket -d --destination --tmpdir --ca --ca-key --server-ca --key-type --mem --cpu --block --size --network --bridge" ;;
    create-block|create_block) opts="-h --help --json -v --verbose -q --quiet --verbosity --color --socket -d --destination --csr --tmpdir --ca --ca-key --server-ca --key-type --data --compression-level"
      valued="--verbosity --color --socket -d --destination --tmpdir --ca --ca-key --server-ca --key-type --data --compression-level" ;;
    set-block|set_block) opts="-h --help --json -v --verbose -q --quiet --verbosity --color --socket -d --destination --csr --tmpdir --ca --ca-key --server-ca --key-type --compression-level"
      valued="--verbosity --color --socket -d --destination --tmpdir --ca --ca-key --server-ca --key-type --compression-level" files=1 ;;
    dump-block|dump_block) opts="-h --help --json -v --verbose -q --quiet --verbosity --color --socket -d --destination --csr --tmpdir --ca --ca-key --server-ca --key-type -o --output --compression-level"
      valued="--verbosity --color --socket -d --destination --tmpdir --ca --ca-key --server-ca --key-type -o --output --compression-level" ;;
    destroy-block|destroy_block) opts="-h --help --json -v --verbose -q --quiet --verbosity --color --socket -d --destination --csr --tmpdir --ca --ca-key --server-ca --key-type"
      valued="--verbosity --color --socket -d --destination --tmpdir --ca --ca-key --server-ca --key-type" ;;
    console) opts="-h --help --json -v --verbose -q --quiet --verbosity --color --socket -d --destination --csr --tmpdir --ca --ca-key --server-ca --key-type --since --count"
      valued="--verbosity --color --socket -d --destination --tmpdir --ca --ca-key --server-ca --key-type --since --count" ;;
    stats-add|stats_add) opts="-h --help --json -v --verbose -q --quiet --verbosity --color --socket -d --destination --csr --tmpdir --ca --ca-key --server-ca --key-type --vmmdev --bridge -n --name"
      valued="--verbosity --color --socket -d --destination --tmpdir --ca --ca-key --server-ca --key-type --vmmdev --bridge -n --name" ;;
    stats-remove|stats_remove) opts="-h --help --json -v --verbose -q --quiet --verbosity --color --socket -d --destination --csr --tmpdir --ca --ca-key --server-ca --key-type -n --name"
      valued="--verbosity --color --socket -d --destination --tmpdir --ca --ca-key --server-ca --key-type -n --name" ;;
    log) opts="-h --help --json -v --verbose -q --quiet --verbosity --color --socket -d --destination --csr --tmpdir --ca --ca-key --server-ca --key-type -n --name --since --count"
      valued="--verbosity --color --socket -d --destination --tmpdir --ca --ca-key --server-ca --key-type -n --name --since --count" ;;
    inspect-dump|inspect_dump) opts="-h --help --json -v --verbose -q --quiet --verbosity --color --dbdir --file"
      valued="--verbosity --color --dbdir --file" ;;
    extract-dump|extract_dump) opts="-h --help --json -v --verbose -q --quiet --verbosity --color -o --output --dbdir --file"
      valued="--verbosity --color -o --output --dbdir --file" ;;
    certificate) opts="-h --help --json -v --verbose -q --quiet --verbosity --color --socket -d --destination --csr --tmpdir --ca --ca-key --server-ca --key-type"
      valued="--verbosity --color --socket -d --destination --tmpdir --ca --ca-key --server-ca --key-type" files=1 ;;
    sign) opts="-h --help --json -v --verbose -q --quiet --verbosity --color --days"
      valued="--verbosity --color --days" files=1 ;;
    generate) opts="-h --help --json -v --verbose -q --quiet --verbosity --color --days --server --server-days --key-type"
      valued="--verbosity --color --days --server --server-days --key-type" files=1 ;;
    revoke) opts="-h --help --json -v --verbose -q --quiet --verbosity --color --crl --days"
      valued="--verbosity --color --crl --days" files=1 ;;
    help) opts="-h --help"
      valued="" ;;
  esac
  case $prev in
    --arg|--block|--bridge|--count|--cpu|--cpus|--days|--destination|--exit-code|--http-host|--linux-boot|--mem|--name|--net|--network|--path|--server|--server-days|--since|--size|--startup|--verbosity|--vmmdev|-d|-n|-p)
      [[ " $valued " == *" $prev "* ]] && { COMPREPLY=(); return; } ;;
    --compression-level)
      [[ " $valued " == *" $prev "* ]] && { COMPREPLY=($(compgen -W "0 1 2 3 4 5 6 7 8 9" -- "$cur")); return; } ;;
    --dbdir|--tmpdir)
      [[ " $valued " == *" $prev "* ]] && { COMPREPLY=($(compgen -d -- "$cur")); return; } ;;
    --ca|--ca-key|--crl|--data|--file|--output|--server-ca|--socket|-o)
      [[ " $valued " == *" $prev "* ]] && { COMPREPLY=($(compgen -f -- "$cur")); return; } ;;
    --color)
      [[ " $valued " == *" $prev "* ]] && { COMPREPLY=($(compgen -W "auto always never" -- "$cur")); return; } ;;
    --key-type)
      [[ " $valued " == *" $prev "* ]] && { COMPREPLY=($(compgen -W "rsa2048 rsa4096 ed25519 p256 p384 p521" -- "$cur")); return; } ;;
    --typ)
      [[ " $valued " == *" $prev "* ]] && { COMPREPLY=($(compgen -W "solo5 bhyve qemu" -- "$cur")); return; } ;;
  esac
  if [[ $cur == -* ]]; then
    COMPREPLY=($(compgen -W "$opts" -- "$cur"))
  elif [ "$sub" = help ]; then
    COMPREPLY=($(compgen -W "$commands" -- "$cur"))
  elif [ -n "$files" ]; then
    COMPREPLY=($(compgen -f -- "$cur"))
  fi
}

complete -F _albatross_client albatross-client vmmc
