# bash completion for cascade-tracker(8). Installed as
# .../bash-completion/completions/cascade-tracker; needs bash-completion.
# Every long option of `cascade-tracker --help` must be offered here:
# tests/it_install.sh checks.

_cascade_tracker()
{
    local cur prev words cword split
    _init_completion -s || return

    case $prev in
    -a | --allow)
        _filedir
        return ;;
    -l | --listen | -g | --good | -e | --expiry | -m | --max-peers | --max-hashes | \
    --max-peers-per-hash | --max-hashes-per-source | --max-ports-per-source | \
    --max-connections | --max-connections-per-source | --request-timeout)
        return ;;
    esac
    $split && return

    COMPREPLY=($(compgen -W '-l --listen -a --allow -g --good -e --expiry -m --max-peers
        --max-hashes --max-peers-per-hash --max-hashes-per-source --max-ports-per-source
        --max-connections --max-connections-per-source --request-timeout
        -v --verbose -q --quiet -h --help -V --version' -- "$cur"))
}
complete -F _cascade_tracker cascade-tracker
