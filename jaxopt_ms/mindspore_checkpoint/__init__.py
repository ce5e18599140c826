"""MindSpore checkpoints in and out, optimizer state included: resume a MindSpore run in JAX, and go back.

MindSpore's ``save_checkpoint(train_cell)`` writes the network's parameters *and* the optimizer's state under
names such as ``moment1.conv1.weight``, ``beta1_power``, ``global_step`` or ``scale_sense``. This package reads
and writes both of MindSpore's file formats without MindSpore, and places that state under a jaxopt_ms
optimizer's state so that the next ``update`` is MindSpore's next step::

    ckpt = jaxopt_ms.mindspore_checkpoint.load('resnet-5_100.ckpt')          # {name: numpy array}
    opt = jaxopt_ms.adam(1e-3)                                               # built as in MindSpore
    params, state = jaxopt_ms.mindspore_checkpoint.from_mindspore(opt, ckpt, params_like)
    ...                                                                      # train on in JAX
    out = jaxopt_ms.mindspore_checkpoint.to_mindspore(opt, params, state)
    jaxopt_ms.mindspore_checkpoint.save('resumed.ckpt', out)                 # mindspore.load_checkpoint reads it

One module per concern: ``formats`` reads and writes ``.ckpt`` (MindSpore's protobuf) and ``.safetensors``
(:func:`load`, :func:`save`; the optional extra ``pip install jaxopt_ms[mindspore]``); ``optimizer_state`` knows
MindSpore's optimizer-state names and where each goes in a jaxopt_ms state (:func:`from_mindspore`,
:func:`to_mindspore`); ``hyperparameters`` checks the hyperparameters MindSpore saves (learning rates, momentum)
against the optimizer; ``models`` ports a whole training state into a Flax (nnx, linen), Equinox or plain-JAX
model's names and layouts and back (:func:`port_from_mindspore`, :func:`port_to_mindspore`), with the name and
layout rules in ``layouts``. The mapping per optimizer and the porting rules are tabulated in
``docs/checkpoints.md``.
"""

from __future__ import annotations

from jaxopt_ms.mindspore_checkpoint.formats import load, save
from jaxopt_ms.mindspore_checkpoint.models import (
    Ported,
    mindspore_filter,
    mindspore_names,
    port_from_mindspore,
    port_to_mindspore,
)
from jaxopt_ms.mindspore_checkpoint.optimizer_state import from_mindspore, to_mindspore

__all__ = ["Ported", "from_mindspore", "load", "mindspore_filter", "mindspore_names", "port_from_mindspore",
           "port_to_mindspore", "save", "to_mindspore"]

# The public names are documented (and reached) as jaxopt_ms.mindspore_checkpoint.<name>, wherever defined.
for _name in __all__:
    globals()[_name].__module__ = __name__
del _name
