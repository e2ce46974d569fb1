"""The ``matchlab`` verbs and the ``python -m`` commands, read off their argparse parsers."""

from __future__ import annotations

import argparse
import inspect

from matchlab.docs_reference.markdown import cell, code, document, header, table


def _metavar(action: argparse.Action) -> str:
    if action.metavar is not None:
        return str(action.metavar)
    if action.choices is not None:
        return "{" + ",".join(map(str, action.choices)) + "}"
    return action.dest.upper() if action.option_strings else action.dest


def invocation(action: argparse.Action) -> str:
    """How the argument is written: ``--backend {local,k3d,k8s}``, ``-v, --verbose``, ``symbol``."""
    if not action.option_strings:
        return _metavar(action)
    names = ", ".join(action.option_strings)
    return names if action.nargs == 0 else f"{names} {_metavar(action)}"


def _shown(action: argparse.Action) -> bool:
    return not isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)) and action.help != argparse.SUPPRESS


def usage(parser: argparse.ArgumentParser) -> str:
    """The command with its positionals in order and ``[options]`` when it has any (the tables list them)."""
    words = [parser.prog]
    for action in parser._actions:
        if _shown(action) and not action.option_strings:
            words.append(f"[{_metavar(action)}]" if action.nargs == "?" else _metavar(action))
    if any(_shown(a) and a.option_strings for a in parser._actions):
        words.append("[options]")
    return " ".join(words)


def _default(action: argparse.Action) -> str:
    if action.nargs == 0 or action.default in (None, argparse.SUPPRESS) or action.default == []:
        return ""
    return code(action.default)


def rows(actions: list[argparse.Action]) -> list[list[str]]:
    return [[code(invocation(a)), _default(a), cell(a.help or "")] for a in actions]


def arguments_tables(parser: argparse.ArgumentParser, skip: frozenset[str] = frozenset(),
                     level: str = "###") -> list[str]:
    """Positionals, then one table per named argument group, then the rest; the dests in ``skip`` left out."""
    generic = ("positional arguments", "options", "optional arguments")
    groups = [(g, [a for a in g._group_actions if _shown(a) and a.dest not in skip]) for g in parser._action_groups]
    groups = [(g, actions) for g, actions in groups if actions]
    named = [(g, a) for g, a in groups if g.title not in generic]
    ordered = ([(g, a) for g, a in groups if g.title == generic[0]] + named
               + [(g, a) for g, a in groups if g.title in generic[1:]])
    lines: list[str] = []
    for group, actions in ordered:
        if group.title not in generic:
            lines += [f"{level} {group.title[0].upper()}{group.title[1:]}", ""]
        elif named and group.title != generic[0]:
            lines += [f"{level} Other options", ""]
        lines += table(["argument", "default", "what it does"], rows(actions))
    return lines


def _subparsers(parser: argparse.ArgumentParser) -> argparse._SubParsersAction:
    return next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))


def matchlab_page() -> str:
    from matchlab.cli import main

    parser = main.build_parser()
    common = [a for a in parser._actions if _shown(a) and a.option_strings]
    verbs = _subparsers(parser)
    helps = {a.dest: a.help for a in verbs._choices_actions}
    conventions = _paragraphs(main)[1]  # idempotence, errors and exit codes, as the module states them
    lines = header("The matchlab command", f"""
`matchlab VERB` operates the stack by hand, with the same code as the pytest fixtures. {conventions}

[The local stack](local-stack.md) and [Kubernetes](kubernetes.md) show the verbs at work.
""")
    lines += ["## Options every verb takes", ""]
    lines += table(["argument", "default", "what it does"], rows(common))
    lines += table(["verb", "what it does"], [[f"[`{name}`](#matchlab-{name})", cell(helps.get(name, ""))]
                                              for name in verbs.choices])
    skip = frozenset(a.dest for a in common)
    for name, sub in verbs.choices.items():
        lines += [f"## matchlab {name}", "", cell(helps.get(name, "")), "", "```text", usage(sub), "```", ""]
        lines += arguments_tables(sub, skip)
    return document(lines)


def _paragraphs(module) -> list[str]:
    return [" ".join(p.split()) for p in (inspect.getdoc(module) or "").split("\n\n")]


def _command(title: str, parser: argparse.ArgumentParser, doc: str) -> list[str]:
    lines = [f"## {title}", "", doc.strip(), "", "```text", usage(parser), "```", ""]
    lines += arguments_tables(parser)
    if parser.epilog and parser.formatter_class is argparse.RawDescriptionHelpFormatter:
        lines += ["Examples:", "", "```sh", inspect.cleandoc(parser.epilog), "```", ""]
    return lines


def commands_page() -> str:
    from matchlab.compare import __main__ as compare_main
    from matchlab.history import __main__ as history_main
    from matchlab.loadgen import __main__ as loadgen_main

    lines = header("Commands", """
The project's other command-line tools, each run as `python -m ...` (the `.venv/bin/python` that
`make setup` creates). [Load generator](load-generator.md) and
[comparing runs](../running/comparing.md) explain what they are for.
""")
    loadgen = loadgen_main.build_parser()
    lines += _command("python -m matchlab.loadgen", loadgen, loadgen.description or "")
    lines += _command("python -m matchlab.compare", compare_main.parser(), "\n\n".join(_paragraphs(compare_main)))
    lines += _command("python -m matchlab.history", history_main.parser(), "\n\n".join(_paragraphs(history_main)))
    return document(lines)
