"""The experiment catalog holds together: every criterion has a measure, every field it names exists."""

from __future__ import annotations

import pytest

from matchlab.experiment import catalog, registry
from matchlab.experiment.catalog import EXPERIMENTS, MEASURES, MatchPhase, Phases, RampPhase
from matchlab.experiment.comparisons import Comparison
from matchlab.experiment.profiles import PROFILES


@pytest.mark.parametrize("profile", list(PROFILES.values()), ids=list(PROFILES))
def test_every_criterion_is_paired_with_a_measure_and_belongs_to_an_experiment(profile):
    criteria = registry.build(profile)
    assert set(criteria) == set(MEASURES), set(criteria) ^ set(MEASURES)
    assert {c.experiment for c in criteria.values()} <= set(EXPERIMENTS)


@pytest.mark.parametrize("profile", list(PROFILES.values()), ids=list(PROFILES))
def test_every_duration_and_design_an_experiment_names_is_in_the_profile(profile):
    for exp in EXPERIMENTS.values():
        assert set(exp.needs) <= set(EXPERIMENTS), exp.id
        design = exp.design
        if isinstance(design, Phases):
            for phase in design.phases:
                fields = [phase.durations] if isinstance(phase, RampPhase) else [phase.duration, phase.steer_for]
                for name in filter(None, fields):
                    assert getattr(profile, name) is not None, (exp.id, name)
                if isinstance(phase, MatchPhase):
                    assert phase.matches_per_min > 0
        if isinstance(design, Comparison):
            cycles = getattr(profile, design.cycles)
            assert cycles.blocks_per_arm >= 1 and cycles.looks.cap >= 1
            assert design.criterion in MEASURES


def test_each_bar_is_written_once():
    """The catalog and the comparisons read the registry's bars; no module keeps its own copy."""
    assert catalog.B5.load_matches_per_min == 3000 and registry.ISOLATION_RATIO == 0.05
    assert registry.build(PROFILES["quick"])["A4.decoupling"].threshold == registry.DECOUPLING_RATIO
    assert registry.build(PROFILES["quick"])["B5.isolation"].comparison == "within"
