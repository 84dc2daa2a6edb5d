#!/usr/bin/env bash
# Integration test for `meson install`: installs into a temporary DESTDIR
# and checks what a packager gets.
#   - the exact list of installed files (programs, man pages, completions,
#     systemd units);
#   - every man page renders with `man --warnings -l` without a warning;
#   - every option of every --help (cascade CMD, cascade-tracker, cascadefs)
#     and every cascadefs -o key appears in its man page, cascade CMD's
#     options in the "cascade CMD" section of cascade(1);
#   - the bash completions parse, register, and offer every option and
#     -o key; the zsh completion parses (where zsh is) and names them all;
#   - the units carry the real bindir and pass `systemd-analyze verify`
#     (where it works here);
#   - the installed programs run and print the version with -V.
# To add an option: put it in the program's --help, in its man page
# (contrib/man/*.scd) and in the completions (contrib/completion/).
set -u

# shellcheck source=tests/swarm_lib.sh
. "${CASCADE_SRC:?CASCADE_SRC not set}/tests/swarm_lib.sh"
BINDIR=${CASCADE_INSTALL_BINDIR:?} MANDIR=${CASCADE_INSTALL_MANDIR:?}
BASHDIR=${CASCADE_INSTALL_BASHDIR:?} ZSHDIR=${CASCADE_INSTALL_ZSHDIR:?}
UNITDIR=${CASCADE_INSTALL_UNITDIR:?} FUSE=${CASCADE_INSTALL_FUSE:?}
VERSION=${CASCADE_VERSION:?}
BASH_COMPLETION=${BASH_COMPLETION_SCRIPT:-/usr/share/bash-completion/bash_completion}

[ "$MANDIR" != no ] ||
    skip "man pages are not built (scdoc missing; bash contrib/deps.sh installs it)"
[ "$BASHDIR" = no ] || [ -r "$BASH_COMPLETION" ] ||
    skip "$BASH_COMPLETION missing (package bash-completion; bash contrib/deps.sh installs it)"
D="$T/dest"

if ! meson install -C "$CASCADE_BUILD" --no-rebuild --destdir "$D" >"$T/install.log" 2>&1; then
    fail "meson install"
    sed 's/^/    /' "$T/install.log"
    exit 1
fi
ok "meson install --destdir"

# ---- the list of installed files ----
programs=(cascade cascade-tracker)
pages=(man1/cascade.1 man5/cascade.5 man8/cascade-tracker.8)
if [ "$FUSE" = yes ]; then
    programs+=(cascadefs)
    pages+=(man1/cascadefs.1)
fi
{
    for p in "${programs[@]}"; do echo "$BINDIR/$p"; done
    for p in "${pages[@]}"; do echo "$MANDIR/$p"; done
    if [ "$BASHDIR" != no ]; then
        for p in "${programs[@]}"; do echo "$BASHDIR/$p"; done
        # cascadefs' completion goes in even without the program: harmless.
        [ "$FUSE" = yes ] || echo "$BASHDIR/cascadefs"
    fi
    [ "$ZSHDIR" = no ] || echo "$ZSHDIR/_cascade"
    [ "$UNITDIR" = no ] || printf '%s\n' "$UNITDIR/cascade-tracker.service" \
                                         "$UNITDIR/cascade-seed@.service"
} | sort >"$T/want"
(cd "$D" && find . -type f -o -type l) | sed 's|^\.||' | sort >"$T/got"
if cmp -s "$T/want" "$T/got"; then
    ok "installed files: $(wc -l <"$T/got")"
else
    fail "installed files differ (- expected, + installed):"
    diff "$T/want" "$T/got" | sed -n 's/^[<>]/    &/p' | sed 's/^    </    -/; s/^    >/    +/'
fi

# ---- the installed programs run ----
for p in "${programs[@]}"; do
    out=$("$D$BINDIR/$p" -V 2>&1)
    case $out in
    "$p $VERSION"*) ok "$p -V: $out" ;;
    *) fail "$p -V printed '$out', want '$p $VERSION'" ;;
    esac
done

# ---- man pages render without warnings ----
for p in "${pages[@]}"; do
    page="$D$MANDIR/$p"
    warnings=$(MANWIDTH=80 man --warnings -l "$page" 2>&1 >/dev/null)
    if [ $? -ne 0 ] || [ -n "$warnings" ]; then
        fail "man --warnings -l $p: $warnings"
    elif ! MANWIDTH=80 man -l "$page" 2>/dev/null | grep -q "^NAME"; then
        fail "man -l $p rendered no NAME section"
    else
        ok "man --warnings -l $p: no warnings"
    fi
done

# ---- every option of every --help is in the man page ----
# help_options: the options named on the option lines of a --help text
# (lines that start with blanks and a dash), up to libfuse's own options.
help_options() {
    sed -n '/^FUSE options:/q; /^[[:space:]]\{1,\}-/p' |
        grep -oE '(^|[[:space:],;])--?[A-Za-z][A-Za-z0-9-]*' | sed 's/^[[:space:],;]*//' | sort -u
}
# help_keys: the -o keys of cascadefs --help.
help_keys() {
    sed -n '/^FUSE options:/q; s/^[[:space:]]*-o \([a-z_]\{1,\}\).*/\1/p' | sort -u
}
# roff_text PAGE [SECTION]: the page's roff without font escapes, all of it
# or one .SS section ("cascade create").
roff_text() {
    sed -e 's/\\f[BIRP]//g' -e 's/\\&//g' "$1" |
        if [ $# -gt 1 ]; then
            awk -v h=".SS $2" '$0 == h { on = 1; next } /^\.S[HS]/ { on = 0 } on'
        else
            cat
        fi
}
# check_each WHAT TEST FILE OPTION... : `TEST OPTION FILE` holds for each option.
check_each() {
    local what=$1 test=$2 file=$3 opt missing=()
    shift 3
    [ -s "$file" ] || { fail "$what: nothing to look in"; return; }
    for opt in "$@"; do
        "$test" "$opt" "$file" || missing+=("$opt")
    done
    if [ ${#missing[@]} -eq 0 ]; then
        ok "$what: all $# there"
    else
        fail "$what: missing ${missing[*]}"
    fi
}
# The option stands alone in the text of a page.
in_page() { grep -qE -- "(^|[^-[:alnum:]])$1([^-[:alnum:]]|\$)" "$2"; }
# The option is one of the words offered (one a line).
in_words() { grep -qxF -- "$1" "$2"; }
check_page() { check_each "$1" in_page "${@:2}"; }

CASCADE="$D$BINDIR/cascade"     # the installed one from here on
man1="$D$MANDIR/man1"
roff_text "$man1/cascade.1" >"$T/cascade.txt"
"$CASCADE" --help >"$T/help" 2>&1
mapfile -t commands < <(sed -n '/^commands:/,/^$/s/^  \([a-z]\{1,\}\) .*/\1/p' "$T/help")
[ ${#commands[@]} -ge 6 ] || fail "cascade --help lists ${#commands[@]} commands"
mapfile -t opts < <(grep -oE '(^|[[:space:]'"'"'(])--?[A-Za-z][A-Za-z0-9-]*' "$T/help" |
                    sed "s/^[[:space:]'(]*//" | sort -u)
check_page "cascade(1) (cascade --help)" "$T/cascade.txt" "${opts[@]}"
for cmd in "${commands[@]}"; do
    "$CASCADE" "$cmd" --help >"$T/help.$cmd" 2>&1
    roff_text "$man1/cascade.1" "cascade $cmd" >"$T/section"
    mapfile -t opts < <(help_options <"$T/help.$cmd")
    [ ${#opts[@]} -gt 0 ] || fail "cascade $cmd --help: no options found"
    check_page "cascade(1) section 'cascade $cmd'" "$T/section" "${opts[@]}"
done

"$D$BINDIR/cascade-tracker" --help >"$T/help.tracker" 2>&1
roff_text "$D$MANDIR/man8/cascade-tracker.8" >"$T/tracker.txt"
mapfile -t opts < <(help_options <"$T/help.tracker")
check_page "cascade-tracker(8)" "$T/tracker.txt" "${opts[@]}"

keys=()
if [ "$FUSE" = yes ]; then
    "$D$BINDIR/cascadefs" --help >"$T/help.fs" 2>&1
    roff_text "$man1/cascadefs.1" >"$T/fs.txt"
    mapfile -t opts < <(help_options <"$T/help.fs")
    check_page "cascadefs(1)" "$T/fs.txt" "${opts[@]}"
    mapfile -t keys < <(help_keys <"$T/help.fs")
    [ ${#keys[@]} -ge 8 ] || fail "cascadefs --help: only ${#keys[@]} -o keys found"
    check_page "cascadefs(1) -o keys" "$T/fs.txt" "${keys[@]/#/-o }"
fi

# ---- completions ----
# complete_words PROGRAM WORD... : what bash completion offers for the last
# word, one per line (run in a clean bash with bash-completion loaded).
complete_words() {
    local prog=$1
    shift
    bash --norc --noprofile -c '
        source "$1" && source "$2" || exit 1
        COMP_WORDS=("${@:4}"); COMP_CWORD=$((${#COMP_WORDS[@]} - 1))
        COMP_LINE="${COMP_WORDS[*]}"; COMP_POINT=${#COMP_LINE}; COMPREPLY=()
        fn=$(complete -p "$3" | sed -n "s/.* -F \([^ ]*\) .*/\1/p")
        "$fn" 2>/dev/null
        printf "%s\n" "${COMPREPLY[@]}"' bash "$BASH_COMPLETION" "$D$BASHDIR/$prog" "$prog" "$@"
}
check_offered() { check_each "$1" in_words "${@:2}"; }

if [ "$BASHDIR" != no ]; then
    for prog in cascade cascade-tracker cascadefs; do
        f="$D$BASHDIR/$prog"
        if ! bash -n "$f" 2>"$T/err"; then
            fail "bash -n $prog: $(cat "$T/err")"
        elif ! bash --norc --noprofile -c 'source "$1" && source "$2" && complete -p "$3"' \
                bash "$BASH_COMPLETION" "$f" "$prog" >"$T/out" 2>"$T/err"; then
            fail "sourcing the $prog completion registers nothing: $(cat "$T/err")"
        else
            ok "bash completion for $prog: $(cat "$T/out")"
        fi
    done
    complete_words cascade cascade "" >"$T/words"
    check_offered "bash: cascade COMMAND" "$T/words" "${commands[@]}"
    for cmd in "${commands[@]}"; do
        complete_words cascade cascade "$cmd" - >"$T/words"
        mapfile -t opts < <(help_options <"$T/help.$cmd")
        check_offered "bash: cascade $cmd -" "$T/words" "${opts[@]}"
    done
    complete_words cascade-tracker cascade-tracker - >"$T/words"
    mapfile -t opts < <(help_options <"$T/help.tracker")
    check_offered "bash: cascade-tracker -" "$T/words" "${opts[@]}"
    if [ "$FUSE" = yes ]; then
        complete_words cascadefs cascadefs - >"$T/words"
        mapfile -t opts < <(help_options <"$T/help.fs")
        check_offered "bash: cascadefs -" "$T/words" "${opts[@]}"
        complete_words cascadefs cascadefs -o "" | sed 's/=$//' >"$T/words"
        check_offered "bash: cascadefs -o" "$T/words" "${keys[@]}"
        # The last item of a list is completed; readline keeps what comes
        # before the last ':' or '=' itself.
        complete_words cascadefs cascadefs -o "tracker=127.0.0.1:8888,nospl" >"$T/words"
        check_offered "bash: cascadefs -o tracker=...:8888,nospl" "$T/words" "8888,nosplice"
    fi
fi

if [ "$ZSHDIR" != no ]; then
    z="$D$ZSHDIR/_cascade"
    all=()
    for f in "$T"/help.*; do
        mapfile -t opts < <(help_options <"$f" | grep -- '^--')
        all+=("${opts[@]}")
    done
    in_zsh_spec() { grep -qE -- "[{,'\"]$1[=,}'\[]" "$2"; }     # {-b+,--block-size=}
    in_zsh_values() { grep -qF -- "'$1[" "$2"; }                   # 'tracker[tracker]...'
    check_each "zsh: long options" in_zsh_spec "$z" "${all[@]}"
    [ ${#keys[@]} -eq 0 ] || check_each "zsh: cascadefs -o keys" in_zsh_values "$z" "${keys[@]}"
    if command -v zsh >/dev/null; then
        if zsh -n "$z" 2>"$T/err"; then ok "zsh -n _cascade"; else fail "zsh -n _cascade: $(cat "$T/err")"; fi
    else
        echo "SKIP: zsh not installed: _cascade not parsed"
    fi
fi

# ---- systemd units ----
if [ "$UNITDIR" != no ]; then
    for u in cascade-tracker.service cascade-seed@.service; do
        f="$D$UNITDIR/$u"
        grep -q '@bindir@' "$f" && fail "$u: @bindir@ left in place"
        exec_line=$(grep '^ExecStart=' "$f")
        case $exec_line in
        "ExecStart=$BINDIR/cascade"*) ok "$u: $exec_line" ;;
        *) fail "$u: ExecStart does not start with the bindir $BINDIR: $exec_line" ;;
        esac
    done
    grep -q -- '--cache ${CACHE_DIRECTORY}' "$D$UNITDIR/cascade-seed@.service" &&
        grep -q -- '--data ' "$D$UNITDIR/cascade-seed@.service" ||
        fail "cascade-seed@.service does not pass --data and --cache \${CACHE_DIRECTORY}"

    # systemd-analyze verify checks that ExecStart's program exists: verify
    # copies that point into the DESTDIR. Skipped where it cannot verify
    # even a trivial unit (no systemd, or a container that stops it).
    mkdir -p "$T/units"
    printf '[Service]\nExecStart=/bin/true\n' >"$T/units/probe.service"
    if ! command -v systemd-analyze >/dev/null; then
        echo "SKIP: systemd-analyze not installed: units not verified"
    elif [ -n "$(systemd-analyze verify --man=no "$T/units/probe.service" 2>&1)" ]; then
        echo "SKIP: systemd-analyze verify does not work here: units not verified"
    else
        for u in cascade-tracker.service cascade-seed@.service; do
            sed "s|^ExecStart=$BINDIR/|ExecStart=$D$BINDIR/|" "$D$UNITDIR/$u" >"$T/units/$u"
            out=$(systemd-analyze verify --man=no "$T/units/$u" 2>&1)
            if [ -n "$out" ]; then
                fail "systemd-analyze verify $u: $out"
            else
                ok "systemd-analyze verify $u"
            fi
        done
    fi
fi

echo "it_install: $failures failure(s)"
[ "$failures" -eq 0 ]
