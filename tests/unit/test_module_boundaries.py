"""The gateway stands alone: it shares the neutral HTTP module with the shard, not the shard's code."""

import subprocess
import sys


def test_gateway_imports_neither_shard_code_nor_kafka():
    probe = ("import sys, matchlab.gateway.__main__; "
             "print(' '.join(sorted(m for m in sys.modules if m.startswith(('matchlab.shard', 'confluent_kafka')))))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "", f"the gateway process loads {out}"
