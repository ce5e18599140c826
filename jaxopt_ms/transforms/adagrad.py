"""MindSpore's Adagrad direction (op ``ApplyAdagrad``), reference §3.11.

    a <- a + g²   (only if update_slots)
    d  = g / sqrt(a)                      no epsilon; the accumulator starts at ``initial_accum`` (0.1)

``update_slots=False`` freezes the accumulator, as the documented formula and MindSpore's GPU kernel do (the CPU
kernel ignores the flag). ``optax.scale_by_rss`` is not used: it maps ``0 / 0`` to 0 where MindSpore gives nan
(``accum=0`` with a zero gradient) and has no ``update_slots``. The learning rate is a later block.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from jaxopt_ms._tree import unzip

__all__ = ["ScaleByAdagradState", "adagrad_update", "scale_by_adagrad"]


class ScaleByAdagradState(NamedTuple):
    """MindSpore's name: ``accum``."""

    accum: optax.Updates


def adagrad_update(g, accum, update_slots: bool = True):
    """One element-wise Adagrad step. Returns ``(direction, new_accum)``: ``g / sqrt(accum + g²)``."""
    new_accum = (accum + g * g).astype(accum.dtype) if update_slots else accum
    return (g / jnp.sqrt(new_accum)).astype(g.dtype), new_accum


def scale_by_adagrad(initial_accum: float = 0.1, update_slots: bool = True) -> optax.GradientTransformation:
    """MindSpore Adagrad's direction ``g / sqrt(accum)`` (see the module docstring)."""

    def init_fn(params):
        return ScaleByAdagradState(accum=jax.tree.map(lambda p: jnp.full_like(p, initial_accum), params))

    def update_fn(updates, state, params=None):
        del params
        out = jax.tree.map(lambda g, a: adagrad_update(g, a, update_slots), updates, state.accum)
        direction, accum = unzip(out, updates, 2)
        return direction, ScaleByAdagradState(accum)

    return optax.GradientTransformation(init_fn, update_fn)
