"""Origin–destination estimates from boardings and alightings: iterative proportional fitting.

Counts at the doors tell how many got on and off at each stop, not who went where. IPF
(Deming–Stephan; in transit planning the Fratar method) finds the trip table closest to a
seed (in the minimum-information sense) whose row sums are the boardings and whose column
sums are the alightings. The seed allows only journeys forward along the trip (alight after
boarding), equally likely otherwise: so the estimate assumes where people get off does not
depend on where they got on, beyond direction. Margins must agree (as many off as on); when
they do not, the alightings are scaled to the boardings and the result is flagged.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class OdResult:
    matrix: np.ndarray  # [boarding stop, alighting stop], riders (fractional)
    iterations: int
    converged: bool
    max_error: float  # largest margin mismatch left, in riders
    flags: list[str] = field(default_factory=list)


def forward_seed(n: int) -> np.ndarray:
    """1 where a journey is possible (alight at a later stop), else 0."""
    return np.triu(np.ones((n, n)), k=1)


def ipf(
    boardings: list[float],
    alightings: list[float],
    seed: np.ndarray | None = None,
    *,
    tol: float = 1e-6,
    max_iter: int = 1000,
) -> OdResult:
    rows = np.asarray(boardings, dtype=float)
    cols = np.asarray(alightings, dtype=float)
    n = len(rows)
    if len(cols) != n:
        raise ValueError(f"{n} boarding counts but {len(cols)} alighting counts")
    if (rows < 0).any() or (cols < 0).any():
        raise ValueError("counts cannot be negative")
    flags: list[str] = []
    m = forward_seed(n) if seed is None else np.asarray(seed, dtype=float).copy()
    if m.shape != (n, n):
        raise ValueError(f"seed must be {n}x{n}")
    total_on, total_off = rows.sum(), cols.sum()
    if total_on == 0 and total_off == 0:
        return OdResult(np.zeros((n, n)), 0, True, 0.0, flags)
    if not np.isclose(total_on, total_off):
        flags.append(
            f"margins disagree ({total_on:g} boardings, {total_off:g} alightings): "
            "alightings scaled to the boardings"
        )
        cols = cols * (total_on / total_off) if total_off else cols
    reach_row = m.sum(axis=1)
    reach_col = m.sum(axis=0)
    if ((rows > 0) & (reach_row == 0)).any() or ((cols > 0) & (reach_col == 0)).any():
        flags.append(
            "some counts cannot be matched (boardings at the last stop or alightings at the first)"
        )
    converged = False
    iterations = 0
    while iterations < max_iter:
        iterations += 1
        rs = m.sum(axis=1)
        m *= np.divide(rows, rs, out=np.zeros_like(rows), where=rs > 0)[:, None]
        cs = m.sum(axis=0)
        m *= np.divide(cols, cs, out=np.zeros_like(cols), where=cs > 0)[None, :]
        err = max(np.abs(m.sum(axis=1) - rows).max(), np.abs(m.sum(axis=0) - cols).max())
        if err < tol:
            converged = True
            break
    err = float(max(np.abs(m.sum(axis=1) - rows).max(), np.abs(m.sum(axis=0) - cols).max()))
    if not converged:
        flags.append(f"did not converge in {max_iter} iterations (off by {err:.2f} riders)")
    return OdResult(m, iterations, converged, err, flags)
