"""``artifacts completion bash|zsh|fish``: shell completion generated from the parser.

The argparse tree is read once into :class:`Node` (options, which of them
take a value, their choices, subcommands) and written out as a bash
function (zsh runs the same through ``bashcompinit``) or as fish
``complete`` lines. Nothing is imported at completion time: the shell does
it all, so a Tab costs no Python start-up.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from typing import Dict, List, Tuple


@dataclass
class Node:
    """One (sub)command: its options and subcommands (or positional choices)."""

    options: List[Tuple[str, str]] = field(default_factory=list)  # (flag, help)
    takes_value: List[str] = field(default_factory=list)
    choices: Dict[str, List[str]] = field(default_factory=dict)  # flag -> values
    subs: Dict[str, Tuple[str, "Node"]] = field(default_factory=dict)  # name -> (help, node)


def tree(parser: argparse.ArgumentParser) -> Node:
    """The parser's options and subcommands, recursively."""
    node = Node()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {a.dest: a.help or "" for a in action._choices_actions}
            for name, sub in action.choices.items():
                node.subs[name] = (helps.get(name, ""), tree(sub))
        elif action.option_strings:
            for flag in action.option_strings:
                node.options.append((flag, action.help or ""))
                if action.nargs != 0:
                    node.takes_value.append(flag)
                    if action.choices:
                        node.choices[flag] = [str(c) for c in action.choices]
        elif action.choices:  # a positional with a fixed set of values
            for value in action.choices:
                node.subs[str(value)] = ("", Node())
    return node


def _walk(node: Node, path: str = "") -> List[Tuple[str, Node]]:
    out = [(path, node)]
    for name, (_help, sub) in node.subs.items():
        out.extend(_walk(sub, f"{path} {name}".strip()))
    return out


def bash(root: Node, prog: str) -> str:
    """A bash completion script for ``prog``."""
    fn = "_" + prog.replace("-", "_")
    specs, choices = [], []
    for path, node in _walk(root):
        opts = " ".join(flag for flag, _ in node.options)
        specs.append(f'        "{path}") opts="{opts}"; vals="{" ".join(node.takes_value)}"; '
                     f'subs="{" ".join(node.subs)}";;')
        for flag, values in node.choices.items():
            choices.append(f'        "{path}|{flag}") COMPREPLY=($(compgen -W "{" ".join(values)}"'
                           ' -- "$cur"));;')
    return f"""\
# {prog} completion for bash (and zsh through bashcompinit)
{fn}_spec() {{
    case "$1" in
{chr(10).join(specs)}
        *) opts=""; vals=""; subs="";;
    esac
}}
{fn}() {{
    local cur="${{COMP_WORDS[COMP_CWORD]}}" prev="" path="" w i skip=0 opts vals subs
    {fn}_spec ""
    for ((i = 1; i < COMP_CWORD; i++)); do
        w="${{COMP_WORDS[i]}}"
        if ((skip)); then skip=0
        elif [[ "$w" == -* ]]; then
            if [[ " $vals " == *" $w "* ]]; then skip=1; prev="$w"; fi
        elif [[ " $subs " == *" $w "* ]]; then
            path="${{path:+$path }}$w"; {fn}_spec "$path"
        fi
    done
    COMPREPLY=()
    if ((skip)); then
        case "$path|$prev" in
{chr(10).join(choices)}
            *) COMPREPLY=($(compgen -f -- "$cur"));;
        esac
    elif [[ "$cur" == -* ]]; then COMPREPLY=($(compgen -W "$opts" -- "$cur"))
    elif [[ -n "$subs" ]]; then COMPREPLY=($(compgen -W "$subs" -- "$cur"))
    else COMPREPLY=($(compgen -f -- "$cur"))
    fi
}}
complete -o filenames -F {fn} {prog}
"""


def zsh(root: Node, prog: str) -> str:
    """The bash script, run by zsh's bashcompinit."""
    return (f"#compdef {prog}\nautoload -U +X bashcompinit && bashcompinit\n"
            + bash(root, prog))


def fish(root: Node, prog: str) -> str:
    """``complete`` lines for fish."""
    def quote(text: str) -> str:
        return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"

    lines = [f"# {prog} completion for fish", f"complete -c {prog} -f"]
    for path, node in _walk(root):
        words = path.split()
        if not words:
            cond = "__fish_use_subcommand"
        else:
            cond = f"__fish_seen_subcommand_from {words[-1]}"
            if node.subs:
                cond += f"; and not __fish_seen_subcommand_from {' '.join(node.subs)}"
        for name, (help, _sub) in node.subs.items():
            lines.append(f"complete -c {prog} -n {quote(cond)} -a {quote(name)} -d {quote(help)}")
        for flag, help in node.options:
            kind = f"-l {flag[2:]}" if flag.startswith("--") else f"-s {flag[1:]}"
            if flag in node.choices:
                kind += f" -x -a {quote(' '.join(node.choices[flag]))}"
            elif flag in node.takes_value:
                kind += " -r -F"
            lines.append(f"complete -c {prog} -n {quote(cond)} {kind} -d {quote(help)}")
    return "\n".join(lines) + "\n"


SHELLS = {"bash": bash, "zsh": zsh, "fish": fish}


def script(parser: argparse.ArgumentParser, shell: str) -> str:
    """The completion script for ``shell`` (bash, zsh or fish)."""
    return SHELLS[shell](tree(parser), parser.prog)
