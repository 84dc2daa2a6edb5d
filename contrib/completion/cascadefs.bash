# bash completion for cascadefs(1). Installed as
# .../bash-completion/completions/cascadefs; needs bash-completion.
# Every option of `cascadefs --help` and every -o key must be offered here:
# tests/it_install.sh checks.

# The keys of -o: ours, then the FUSE ones worth offering.
_cascadefs_keys='tracker= listen= cache= data= readahead= timeout= fill nosplice stack
    cache_max= verify= upload_slots=
    allow_other auto_unmount max_threads= max_idle_threads= clone_fd ro'

# Complete the last item of a comma-separated -o list (cur holds all of it).
_cascadefs_o()
{
    local head="" item=$cur
    if [[ $cur == *,* ]]; then
        head=${cur%,*},
        item=${cur##*,}
    fi
    local IFS=$'\n'
    case $item in
    cache=*)
        COMPREPLY=($(compgen -d -- "${item#*=}"))
        COMPREPLY=("${COMPREPLY[@]/#/${head}cache=}")
        compopt -o nospace ;;
    data=*)
        COMPREPLY=($(compgen -f -- "${item#*=}"))
        COMPREPLY=("${COMPREPLY[@]/#/${head}data=}")
        compopt -o nospace ;;
    verify=*)
        COMPREPLY=($(compgen -W 'first always never' -- "${item#*=}"))
        COMPREPLY=("${COMPREPLY[@]/#/${head}verify=}") ;;
    *=*) ;;
    *)
        IFS=$' \t\n'
        COMPREPLY=($(compgen -P "$head" -W "$_cascadefs_keys" -- "$item"))
        [[ ${COMPREPLY-} == *= ]] && compopt -o nospace ;;
    esac
    # Readline replaces only the text after the last '=' or ':' of the
    # word (COMP_WORDBREAKS): drop what comes before from every reply.
    local breaks="" before
    [[ $COMP_WORDBREAKS == *=* ]] && breaks+="="
    [[ $COMP_WORDBREAKS == *:* ]] && breaks+=":"
    [[ -n $breaks ]] && before=${cur%"${cur##*[$breaks]}"}
    if [[ -n ${before-} ]]; then
        COMPREPLY=("${COMPREPLY[@]#"$before"}")
    fi
}

_cascadefs()
{
    local cur prev words cword
    _init_completion -n =: || return

    if [[ $prev == -o ]]; then
        _cascadefs_o
        return
    fi
    if [[ $cur == -* ]]; then
        COMPREPLY=($(compgen -W '-o -f -d -s -h --help -V --version' -- "$cur"))
        return
    fi
    # Sources: .cascade files or a folder of them; the mount point: a folder.
    _filedir cascade
}
complete -F _cascadefs cascadefs
