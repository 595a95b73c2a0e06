"""Which examples to label next (active learning), on the embeddings a tlkit model computes.

`select_to_label(model, pool, n, method=...)` ranks an unlabelled pool with one of the
registered methods (`random`, `margin`, `entropy`, `kcenter`, `typiclust`,
`uncertainty_herding`; see
`tlkit.active.methods`) and says why each example was picked; `simulate` replays labelling
rounds on a pool whose labels are known, for benchmarks.

Example:
```python
picks = tlkit.select_to_label(model, data, 50, method="typiclust")
for row in picks.rows():
    print(row["path"], row["why"])
```
"""

from tlkit.active.methods import METHODS, get_method, register_method
from tlkit.active.pool_view import Picks, PoolView
from tlkit.active.selection import DEFAULT_METHOD, Selection, select, select_to_label
from tlkit.active.simulation import simulate

__all__ = [
    "DEFAULT_METHOD",
    "METHODS",
    "Picks",
    "PoolView",
    "Selection",
    "get_method",
    "register_method",
    "select",
    "select_to_label",
    "simulate",
]
