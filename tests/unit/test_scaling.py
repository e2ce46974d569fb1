"""Capacity search and the scaling verdict: knees found within 5 %, bottlenecks named, budgets required."""

from __future__ import annotations

import pytest

from matchlab.experiment import scaling
from matchlab.experiment.criteria import Context, scaling_verdicts
from matchlab.experiment.profiles import QUICK
from matchlab.experiment.record import ExperimentRecord
from matchlab.observe.verdicts import Status
from matchlab.topology import SCALING_CPU_PER_2_CORES

BUDGETS = scaling.Budgets(0.2, 0.5)


def fake_system(knee: float, saturating: str = "me-shard-a"):
    """A system that answers everything below ``knee`` orders/s and falls behind above it."""
    def step(rate: float) -> scaling.Step:
        ok = rate <= knee
        share = {"me-shard-a": 0.5 * rate / knee, "edge-gateway": 0.4 * rate / knee}
        share[saturating] = rate / knee
        return scaling.Step(rate, ok, 1.0 if ok else 0.8, 0.0, 10.0 if ok else 900.0, 5.0, share,
                            {saturating: 0.7} if not ok else {}, 0.0, 0.2, 0.5)
    return step


@pytest.mark.parametrize("knee", [137.0, 440.0, 1234.0])
def test_the_knee_is_found_within_5_percent(knee):
    found, steps, exhausted = scaling.knee_search(fake_system(knee), 100.0)
    assert not exhausted and found is not None and knee * 0.95 <= found <= knee, (found, [s.rate for s in steps])
    assert len(steps) <= scaling.MAX_STEPS


def test_a_system_that_fails_at_once_has_no_knee():
    found, steps, _ = scaling.knee_search(fake_system(10.0), 100.0)
    assert found is None and not any(s.passed for s in steps)


def test_the_bottleneck_names_the_saturated_process_and_its_budget():
    failing = fake_system(100.0, saturating="edge-gateway")(150.0)
    text = scaling.bottleneck(failing, BUDGETS)
    assert text.startswith("edge-gateway at 150% of its 0.5-CPU budget") and "throttled in 70% of periods" in text
    lagging = scaling.Step(150, False, 0.7, 0.0, 900, None, {}, {}, 0.0, 1.0, 250.0)
    assert scaling.bottleneck(lagging, BUDGETS).startswith("the load generator itself")


def capacities(knees: dict[int, float], saturating: dict[int, str], enforced: bool = True) -> ExperimentRecord:
    exp = ExperimentRecord("S1", "scaling", "ASR 2", "gateway", "")
    exp.extra.update(budgets=BUDGETS.describe(), enforced=enforced, not_enforced="" if enforced else "no cgroups")
    exp.extra["capacities"] = [
        scaling.Capacity(n, k, [], scaling.bottleneck(fake_system(k, saturating[n])(k * 1.5), BUDGETS)).to_dict()
        for n, k in knees.items()]
    return exp


def test_linear_capacities_pass_and_the_model_explains():
    (v,) = scaling_verdicts(Context(None, "run", QUICK), capacities({1: 400, 2: 790, 3: 1170},
                                                                  dict.fromkeys((1, 2, 3), "me-shard-a")))
    assert v.status is Status.PASS and v.observed == pytest.approx(0.975) and "USL" in v.detail


def test_a_throttled_gateway_fails_scaling_and_is_named():
    (v,) = scaling_verdicts(Context(None, "run", QUICK), capacities(
        {1: 400, 2: 600, 3: 610}, {1: "me-shard-a", 2: "edge-gateway", 3: "edge-gateway"}))
    assert v.status is Status.FAIL and v.observed == pytest.approx(610 / 1200)
    assert "N=3: 610 orders/s; at the knee: edge-gateway at 150% of its 0.5-CPU budget" in v.detail


def test_without_enforced_budgets_scaling_is_inconclusive():
    (v,) = scaling_verdicts(Context(None, "run", QUICK), capacities({1: 400, 2: 800, 3: 1200},
                                                                  dict.fromkeys((1, 2, 3), "me-shard-a"), False))
    assert v.status is Status.INCONCLUSIVE and "not enforced" in v.detail


def test_the_scaling_chart_draws_the_capacities_against_the_bars():
    from matchlab.observe.charts import scaling_chart

    svg, drawn = scaling_chart(capacities({1: 400, 2: 700, 3: 900}, dict.fromkeys((1, 2, 3), "me-shard-a")))
    assert drawn == 1 and 'id="series-1"' in svg and "0.9 x linear" in svg and "USL (sigma" in svg


@pytest.mark.parametrize("cores", [1, 2, 4, 8])
@pytest.mark.parametrize("k", [3, 4, 5, 6])
def test_per_shard_budgets_shrink_with_k_so_n_equals_k_fits_the_machine(cores, k):
    budgets = scaling.Budgets.for_machine(k, cores)
    # N = K, every shard and the gateway busy, still leaves cores for the load generator, broker and Prometheus.
    assert budgets.total(k) <= 0.6 * cores, budgets.describe()
    # The per-shard budget is chosen from K alone: shard a at N = 1 gets what each of the K shards gets at N = K.
    per_n = {n: {budgets.for_service(f"me-shard-{chr(ord('a') + i)}") for i in range(n)} for n in range(1, k + 1)}
    assert all(v == {budgets.shard_cpu} for v in per_n.values()), per_n
    assert budgets.shard_cpu * k <= SCALING_CPU_PER_2_CORES["shards"] * cores / 2 + 1e-9


def test_budget_arithmetic_on_two_cores():
    assert scaling.Budgets.for_machine(3, 2) == scaling.Budgets(0.2, 0.5, 3, 2)  # DESIGN.md's three: unchanged
    six = scaling.Budgets.for_machine(6, 2)
    assert (six.shard_cpu, six.gateway_cpu) == (0.1, 0.5) and six.total(6) == pytest.approx(1.1)
    assert "0.1 CPU per shard" in six.describe() and "N = 1..6" in six.describe() and "1.1 of 2 cores" in six.describe()
    with pytest.raises(ValueError, match="at least one shard"):
        scaling.Budgets.for_machine(0, 2)


@pytest.mark.parametrize("cpus, period, quota", [(0.2, 10_000, 2_000), (0.1, 10_000, 1_000), (0.05, 20_000, 1_000),
                                                 (1.5, 10_000, 15_000)])
def test_a_small_budget_lengthens_the_period_instead_of_rounding_up(cpus, period, quota):
    from matchlab.stack.cpu_budget import quota_for

    assert quota_for(cpus) == (period, quota)


def test_the_report_states_the_budgets_s1_used():
    from matchlab.experiment.record import RunRecord
    from matchlab.observe.report import render_report

    stated = "S1: " + scaling.Budgets.for_machine(4, 2).describe() + ", cgroup v1"
    html = render_report(RunRecord("local", "quick", "", facts={"CPU budgets": stated}), {}, complete=True, grafana=None)
    assert f"<b>CPU budgets</b>: {stated}" in html and "0.15 CPU per shard" in stated
    assert "none enforced" in render_report(RunRecord("local", "quick", ""), {}, complete=True, grafana=None)
