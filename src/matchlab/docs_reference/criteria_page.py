"""The ASR criteria and what each ASR's status needs, from the registry the verdicts are judged by."""

from __future__ import annotations

from matchlab.docs_reference.markdown import cell, code, document, header, table


def _bar(criterion, quick) -> str:
    from matchlab.observe.verdicts import render

    text = f"{criterion.comparison} {render(criterion.threshold, criterion.unit)}"
    if quick.threshold != criterion.threshold:
        text += f" (quick profile: {quick.comparison} {render(quick.threshold, quick.unit)})"
    return cell(text)


def page() -> str:
    from matchlab.experiment import registry
    from matchlab.experiment.profiles import FULL, QUICK
    from matchlab.observe.verdicts import Role

    full, quick = registry.build(FULL), registry.build(QUICK)
    lines = header("Criteria", """
Every criterion a verdict is given for, by its stable id (what `results.json`, the report and
`python -m matchlab.compare` call it), with its bar and its role in the ASR's status.
[How verdicts are decided](verdicts.md) explains the statuses and the rules behind them.
""")
    lines += ["## What an ASR's status needs", ""]
    rows = []
    for asr, rule in registry.RULES.items():
        required = ", ".join(sorted(r.value for r in rule.required))
        conditional = ", ".join(sorted(r.value for r in rule.conditional))
        rows.append([asr, cell(required), cell(conditional)])
    lines += table(["ASR", "PASS needs every criterion of these roles", "a FAIL among these makes it CONDITIONAL PASS"],
                   rows)
    lines += [cell(f"Criteria in the role `{Role.PRECONDITION.value}` check that the experiment measured what it "
                   "meant to (a stationary book, an empty matcher queue, the planned load): when one does not "
                   "hold, the ASR is INCONCLUSIVE unless a required criterion failed."), ""]
    for asr in registry.RULES:
        lines += [f"## {asr}", ""]
        lines += table(["id", "criterion", "role", "passes when", "what is measured"],
                       [[code(c.id), cell(c.name), c.role.value, _bar(c, quick[c.id]), cell(c.measures)]
                        for c in full.values() if c.asr == asr])
    lines += ["## Profiles", ""]
    for profile in (FULL, QUICK):
        note = profile.scaling_note.removeprefix(f"{profile.name} profile: ")
        lines.append(f"- `--profile {profile.name}`{' (the default)' if profile is FULL else ''}: {cell(note)}")
    lines += ["", cell(f"A quick run's status reads at most PASS (quick), and says what a full run would add: "
                       f"{QUICK.full_adds.removeprefix(f'{QUICK.name} profile: ')}."), ""]
    return document(lines)
