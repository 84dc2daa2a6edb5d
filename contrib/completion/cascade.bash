# bash completion for cascade(1). Installed as .../bash-completion/completions/cascade;
# needs bash-completion (its _init_completion and _filedir).
# Every long option of `cascade CMD --help` must be offered here:
# tests/it_install.sh checks.

_cascade()
{
    local cur prev words cword split
    _init_completion -s || return

    local cmd="" i
    for ((i = 1; i < cword; i++)); do
        if [[ ${words[i]} != -* ]]; then
            cmd=${words[i]}
            break
        fi
    done
    if [[ -z $cmd ]]; then
        if [[ $cur == -* ]]; then
            COMPREPLY=($(compgen -W '-h --help -V --version' -- "$cur"))
        else
            COMPREPLY=($(compgen -W 'create info verify get seed status cache' -- "$cur"))
        fi
        return
    fi

    local opts
    case $cmd in
    create)
        case $prev in
        -b | --block-size)
            COMPREPLY=($(compgen -W '64K 256K 1M 4M 16M' -- "$cur"))
            return ;;
        -o | --output)
            _filedir cascade
            return ;;
        esac
        opts='-b --block-size -o --output -f --force -q --quiet -h --help' ;;
    info)
        opts='--blocks --json -h --help' ;;
    verify)
        opts='-q --quiet -h --help' ;;
    get)
        case $prev in
        -o | --output)
            _filedir
            return ;;
        --cache)
            _filedir -d
            return ;;
        -t | --tracker | --timeout)
            return ;;
        esac
        opts='-o --output -t --tracker --cache --timeout -q --quiet -v --verbose -h --help' ;;
    seed)
        case $prev in
        --data)
            _filedir
            return ;;
        --cache)
            _filedir -d
            return ;;
        -t | --tracker | -l | --listen | --cache-max | --upload-slots)
            return ;;
        esac
        opts='-t --tracker -l --listen --data --cache --cache-max --upload-slots -v --verbose -h --help' ;;
    cache)
        case $prev in
        --cache)
            _filedir -d
            return ;;
        --max)
            return ;;
        cache)
            [[ $cur != -* ]] &&
                COMPREPLY=($(compgen -W 'ls du rm gc verify' -- "$cur")) && return ;;
        esac
        opts='--cache --max --json -h --help' ;;
    status)
        case $prev in
        --cache)
            _filedir -d
            return ;;
        esac
        opts='--json --watch --no-map --cache -h --help' ;;
    *)
        return ;;
    esac
    $split && return

    if [[ $cur == -* ]]; then
        COMPREPLY=($(compgen -W "$opts" -- "$cur"))
        [[ ${COMPREPLY-} == *= ]] && compopt -o nospace
        return
    fi
    case $cmd in
    create | verify | status) _filedir ;;
    cache) ;;
    *) _filedir cascade ;;
    esac
}
complete -F _cascade cascade
