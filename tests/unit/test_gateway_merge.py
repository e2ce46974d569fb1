"""A supervised gateway's workers' metrics pages merge into one page that reads as one gateway's."""

from __future__ import annotations

from prometheus_client.exposition import generate_latest

from matchlab.gateway.workers import _Families, merge_pages
from matchlab.promtext import counter_total, histogram_buckets

PAGE = """# HELP gw_requests_total Requests by owning shard and status class
# TYPE gw_requests_total counter
gw_requests_total{{shard="a",status="2xx"}} {a}
gw_requests_total{{shard="b",status="2xx"}} {b}
# HELP gw_request_duration_seconds Gateway receipt to reply, per shard
# TYPE gw_request_duration_seconds histogram
gw_request_duration_seconds_bucket{{shard="a",le="0.001"}} {a}
gw_request_duration_seconds_bucket{{shard="a",le="+Inf"}} {a}
gw_request_duration_seconds_count{{shard="a"}} {a}
gw_request_duration_seconds_sum{{shard="a"}} 0.5
# HELP gw_connections_open Client connections open now
# TYPE gw_connections_open gauge
gw_connections_open 2.0
# HELP process_start_time_seconds Start time of the process since unix epoch in seconds.
# TYPE process_start_time_seconds gauge
process_start_time_seconds {start}
# HELP process_max_fds Maximum number of open file descriptors.
# TYPE process_max_fds gauge
process_max_fds 1024.0
# HELP python_info Python platform information
# TYPE python_info gauge
python_info{{implementation="CPython",version="3.11.2"}} 1.0
"""


def test_series_add_up_across_workers_and_per_process_facts_do_not():
    merged = generate_latest(_Families(merge_pages([PAGE.format(a=3, b=1, start=200), PAGE.format(a=4, b=0, start=100),
                                                    PAGE.format(a=5, b=2, start=300)]))).decode()
    assert counter_total(merged, "gw_requests", shard="a") == 12 and counter_total(merged, "gw_requests") == 15
    assert histogram_buckets(merged, "gw_request_duration_seconds") == {0.001: 12.0, float("inf"): 12.0}
    assert "gw_request_duration_seconds_sum{shard=\"a\"} 1.5" in merged
    assert "gw_connections_open 6.0" in merged
    assert "process_start_time_seconds 100.0" in merged  # the earliest worker's
    assert "process_max_fds 1024.0" in merged and 'python_info{implementation="CPython",version="3.11.2"} 1.0' in merged
    assert merged.count("# TYPE gw_requests_total counter") == 1


def test_one_page_merges_to_itself():
    page = PAGE.format(a=3, b=1, start=200)
    merged = generate_latest(_Families(merge_pages([page]))).decode()
    assert counter_total(merged, "gw_requests") == counter_total(page, "gw_requests") == 4
