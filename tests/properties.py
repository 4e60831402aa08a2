"""How many examples the costly hypothesis properties draw (docs/architecture.md#tests).

``ROLEGATE_HYPOTHESIS_EXAMPLES`` sets the count of the properties over random registries and
policies (tests/iam/test_role_binding.py, test_iam_eval.py, test_policy_shrink.py); unset, they
draw :data:`DEFAULT_EXAMPLES`: hypothesis' own default, new ones on every laptop run; CI, whose
examples are derandomized (the same every run, tests/conftest.py), draws :data:`CI_EXAMPLES`
so that the one fixed sample it checks stays wide. A deep run raises it, e.g.
``ROLEGATE_HYPOTHESIS_EXAMPLES=2000 .venv/bin/python -m pytest tests/iam -n 2``.
"""

from __future__ import annotations

import os

DEFAULT_EXAMPLES = 100
CI_EXAMPLES = 300


def property_examples() -> int:
    default = CI_EXAMPLES if os.environ.get("CI") == "true" else DEFAULT_EXAMPLES
    return int(os.environ.get("ROLEGATE_HYPOTHESIS_EXAMPLES", str(default)))
