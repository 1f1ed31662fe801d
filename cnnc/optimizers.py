"""Optimizers with Keras 3 names, defaults and update rules, on NumPy arrays updated in place.

Usage (what cnnc's models do)::

    opt = optimizers.get("adam")            # or Adam(learning_rate=1e-3, ...)
    opt.build(params)                       # list of float32 ndarrays; creates the slot arrays
    opt.apply_gradients(zip(grads, params)) # updates each param in place, then iterations += 1

Each step: the current learning rate is taken (a constant, or ``schedule(iterations)``), the
gradients are clipped (clipnorm per variable, global_clipnorm over all, or clipvalue elementwise;
at most one of them, as Keras 3 requires), AdamW's decoupled weight decay is applied, and the
optimizer's update rule runs. ``get_state()`` / ``set_state()`` save and restore the iteration count,
the learning rate and every slot array, so a resumed run continues bit-identically.

Learning-rate schedules live here too: :class:`LearningRateSchedule` and :class:`ExponentialDecay`
(also reachable as ``optimizers.schedules.ExponentialDecay``).
"""
import inspect
import math
import numbers
import types
import warnings

import numpy as np

from . import _alloc, _core
from ._registry import Registry

_F32 = np.dtype(np.float32)

__all__ = [
    "Optimizer", "SGD", "RMSprop", "Adam", "AdamW", "Adagrad",
    "LearningRateSchedule", "ExponentialDecay", "schedules",
    "get", "serialize", "deserialize",
]


# --------------------------------------------------------------------------------------------------
# argument checks

def _real(value, name):
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, received {value!r} ({type(value).__name__})")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, received {name}={value}")
    return value


def _nonneg(value, name):
    value = _real(value, name)
    if value < 0:
        raise ValueError(f"{name} must be >= 0, received {name}={value}")
    return value


def _positive(value, name):
    value = _real(value, name)
    if value <= 0:
        raise ValueError(f"{name} must be > 0, received {name}={value}")
    return value


def _unit(value, name, upper_open=False):
    value = _real(value, name)
    if value < 0 or value > 1 or (upper_open and value == 1):
        rng = "[0, 1)" if upper_open else "[0, 1]"
        raise ValueError(f"{name} must be in {rng}, received {name}={value}")
    return value


def _flag(value, name):
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False, received {value!r}")
    return bool(value)


# --------------------------------------------------------------------------------------------------
# learning-rate schedules

class LearningRateSchedule:
    """Base class of learning-rate schedules: ``schedule(step) -> learning rate`` (step = the
    optimizer's iteration count before the update)."""

    def __call__(self, step):  # pragma: no cover - abstract
        raise NotImplementedError

    def get_config(self):  # pragma: no cover - abstract
        raise NotImplementedError

    @classmethod
    def from_config(cls, config):
        return cls(**config)


class ExponentialDecay(LearningRateSchedule):
    """``initial_learning_rate * decay_rate ** (step / decay_steps)`` (exponent floored when
    ``staircase``), as keras.optimizers.schedules.ExponentialDecay."""

    def __init__(self, initial_learning_rate, decay_steps, decay_rate, staircase=False,
                 name="ExponentialDecay"):
        self.initial_learning_rate = _nonneg(initial_learning_rate, "initial_learning_rate")
        self.decay_steps = _positive(decay_steps, "decay_steps")
        if float(self.decay_steps).is_integer():
            self.decay_steps = int(self.decay_steps)
        self.decay_rate = _nonneg(decay_rate, "decay_rate")
        self.staircase = _flag(staircase, "staircase")
        self.name = name

    def __call__(self, step):
        p = float(step) / self.decay_steps
        if self.staircase:
            p = math.floor(p)
        return self.initial_learning_rate * self.decay_rate ** p

    def get_config(self):
        return {"initial_learning_rate": self.initial_learning_rate, "decay_steps": self.decay_steps,
                "decay_rate": self.decay_rate, "staircase": self.staircase, "name": self.name}


_SCHEDULES = {"ExponentialDecay": ExponentialDecay}


def _serialize_schedule(schedule):
    return {"class_name": type(schedule).__name__, "config": schedule.get_config()}


def _deserialize_schedule(config):
    name = config.get("class_name")
    cls = _SCHEDULES.get(name)
    if cls is None:
        raise ValueError(f"unknown learning-rate schedule {name!r}; choose one of {', '.join(sorted(_SCHEDULES))}")
    return cls.from_config(config.get("config") or {})


schedules = types.SimpleNamespace(LearningRateSchedule=LearningRateSchedule,
                                  ExponentialDecay=ExponentialDecay,
                                  serialize=_serialize_schedule, deserialize=_deserialize_schedule)


def _takes_no_argument(fn):
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return False
    for p in sig.parameters.values():
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.VAR_POSITIONAL):
            return False
    return True


# --------------------------------------------------------------------------------------------------
# base class

# Keras 3 config keys this port does not implement, and the values under which they are inert.
_INERT_KERAS_KEYS = {"use_ema": False, "ema_momentum": None, "ema_overwrite_frequency": None,
                     "loss_scale_factor": None, "gradient_accumulation_steps": None, "weight_decay": None,
                     "is_legacy_optimizer": None, "jit_compile": None, "decay": None}


class Optimizer:
    """Base class. Subclasses define ``_slot_names()``, ``_update(i, grad, var, lr)`` and
    ``get_config()``; slot ``name`` of variable ``i`` is ``self._slots[name][i]``."""

    _default_name = "optimizer"

    def __init__(self, learning_rate, *, clipnorm=None, clipvalue=None, global_clipnorm=None, name=None):
        self._schedule = None
        self._lr = 0.0
        self.learning_rate = learning_rate
        self.clipnorm = None if clipnorm is None else _positive(clipnorm, "clipnorm")
        self.clipvalue = None if clipvalue is None else _positive(clipvalue, "clipvalue")
        self.global_clipnorm = None if global_clipnorm is None else _positive(global_clipnorm, "global_clipnorm")
        if sum(a is not None for a in (clipnorm, clipvalue, global_clipnorm)) > 1:
            raise ValueError(f"only one of clipnorm, clipvalue and global_clipnorm can be set, received "
                             f"clipnorm={clipnorm}, clipvalue={clipvalue}, global_clipnorm={global_clipnorm}")
        if name is not None and not isinstance(name, str):
            raise TypeError(f"name must be a string, received {name!r}")
        self.name = name if name is not None else self._default_name
        self.iterations = 0
        self.built = False
        self._shapes = None
        self._dtypes = None
        self._slots = {}
        self._scratch = {}

    # ---- learning rate -------------------------------------------------------------------------
    @property
    def learning_rate(self):
        """The learning rate the next step will use (a float): the constant, or the schedule's value
        at the current iteration count. Assigning a number makes it a constant (replacing any
        schedule); assigning a LearningRateSchedule or callable installs a schedule."""
        if self._schedule is None:
            return self._lr
        if self._schedule_no_arg:
            return float(self._schedule())
        return float(self._schedule(self.iterations))

    @learning_rate.setter
    def learning_rate(self, value):
        if isinstance(value, LearningRateSchedule) or (callable(value) and not isinstance(value, numbers.Number)):
            self._schedule = value
            self._schedule_no_arg = (not isinstance(value, LearningRateSchedule)) and _takes_no_argument(value)
            return
        if isinstance(value, np.ndarray) and value.ndim == 0:
            value = value[()]
        self._lr = _nonneg(value, "learning_rate")
        self._schedule = None

    # ---- building ------------------------------------------------------------------------------
    def _slot_names(self):
        return []

    def _slot_init(self, name):
        return 0.0

    def build(self, variables):
        """Create the slot arrays (zeroed, or Adagrad's initial accumulator) for ``variables``, the
        list of parameter arrays that apply_gradients will later receive in the same order. Calling
        it again re-creates (resets) the slots; the iteration count is kept."""
        variables = list(variables)
        shapes, dtypes = [], []
        for i, v in enumerate(variables):
            if not isinstance(v, np.ndarray):
                raise TypeError(f"variables[{i}] must be a NumPy array (updated in place), "
                                f"received {type(v).__name__}")
            if v.dtype.kind != "f":
                raise TypeError(f"variables[{i}] must be a floating-point array, received dtype {v.dtype.name}")
            if not v.flags.writeable:
                raise ValueError(f"variables[{i}] is read-only; the optimizer updates variables in place")
            shapes.append(v.shape)
            dtypes.append(v.dtype)
        self._shapes, self._dtypes = shapes, dtypes
        self._slots = {}
        for name in self._slot_names():
            init = self._slot_init(name)
            self._slots[name] = [_alloc.full(s, init, dtype=d) for s, d in zip(shapes, dtypes)]
        self._scratch = {}
        self.built = True

    def _tmp(self, i):
        """A scratch array shaped like variable i (one buffer per dtype, sized for the largest)."""
        shape, dtype = self._shapes[i], self._dtypes[i]
        n = math.prod(shape)
        buf = self._scratch.get(dtype)
        if buf is None or buf.size < n:
            size = max((math.prod(s) for s, d in zip(self._shapes, self._dtypes) if d == dtype), default=n)
            buf = _alloc.empty(max(size, n), dtype=dtype)
            self._scratch[dtype] = buf
        return buf[:n].reshape(shape)

    # ---- stepping ------------------------------------------------------------------------------
    def apply_gradients(self, grads_and_vars):
        """One optimisation step: ``grads_and_vars`` is an iterable of (gradient, variable) pairs in
        the order given to build() (built here on the first call otherwise). Each variable is
        updated in place; a None gradient leaves its variable untouched. Gradients are not modified."""
        pairs = []
        for k, pair in enumerate(grads_and_vars):
            if not isinstance(pair, (tuple, list)) or len(pair) != 2:
                raise TypeError(f"grads_and_vars[{k}] must be a (gradient, variable) pair, received "
                                f"{type(pair).__name__}")
            pairs.append(tuple(pair))
        if not self.built:
            self.build([v for _, v in pairs])
        if len(pairs) != len(self._shapes):
            raise ValueError(f"apply_gradients received {len(pairs)} (gradient, variable) pairs but the "
                             f"optimizer was built for {len(self._shapes)} variables")
        grads = []
        for i, (g, v) in enumerate(pairs):
            if not isinstance(v, np.ndarray) or v.shape != self._shapes[i] or v.dtype != self._dtypes[i]:
                got = (f"shape {v.shape}, dtype {v.dtype.name}" if isinstance(v, np.ndarray)
                       else type(v).__name__)
                raise ValueError(f"variable {i} has {got} but the optimizer was built for shape "
                                 f"{self._shapes[i]}, dtype {self._dtypes[i].name}")
            if g is None:
                grads.append(None)
                continue
            g = np.asarray(g)
            if g.dtype.kind not in "biuf":
                raise TypeError(f"gradient {i} must hold real numbers, received dtype {g.dtype.name}")
            if g.shape != v.shape:
                raise ValueError(f"gradient {i} has shape {g.shape} but its variable has shape {v.shape}")
            grads.append(g if g.dtype is v.dtype else g.astype(v.dtype, copy=False))
        grads = self._clip_gradients(grads)
        lr = self.learning_rate
        rule = self._c_rule(lr)
        batch = []  # the variables the C core updates, all in one call
        for i, (g, (_, v)) in enumerate(zip(grads, pairs)):
            if g is None:
                continue
            if rule is not None and v.dtype is _F32 and v.flags.c_contiguous and v.size:
                batch.append(i)
            else:
                self._update(i, g, v, lr)
        if batch:
            kind, slot_names, scalars = rule
            slots = [None if name is None else [self._slots[name][i] for i in batch] for name in slot_names]
            _core.optim_update(kind, [np.ascontiguousarray(grads[i]) for i in batch], [pairs[i][1] for i in batch],
                               *slots, **scalars)
        self.iterations += 1

    def _clip_gradients(self, grads):
        if self.clipnorm is not None:
            out = []
            for g in grads:
                if g is not None:
                    norm = math.sqrt(float(np.sum(np.square(g), dtype=np.float64)))
                    if not norm <= self.clipnorm:      # NaN/inf norms make the gradient NaN, as in Keras
                        scale = self.clipnorm / norm if math.isfinite(norm) else math.nan
                        g = g * g.dtype.type(scale)
                out.append(g)
            return out
        if self.global_clipnorm is not None:
            sq = sum(float(np.sum(np.square(g), dtype=np.float64)) for g in grads if g is not None)
            norm = math.sqrt(sq)
            if norm <= self.global_clipnorm:
                return grads
            scale = self.global_clipnorm / norm if math.isfinite(norm) else math.nan
            return [None if g is None else g * g.dtype.type(scale) for g in grads]
        if self.clipvalue is not None:
            c = self.clipvalue
            return [None if g is None else np.clip(g, -c, c) for g in grads]
        return grads

    def _update(self, i, g, v, lr):  # pragma: no cover - abstract
        raise NotImplementedError

    def _c_rule(self, lr):
        """(kind, slot names, float32 scalars) of this step's _core.optim_update: the C core's update of
        every C-contiguous float32 variable, exactly _update's (the same bits) in one threaded pass
        instead of a NumPy operation per term; a slot name is None where the rule takes none. None when
        there is no C twin (or a subclass overrides _update)."""
        return None

    # ---- state ---------------------------------------------------------------------------------
    def get_state(self):
        """{'iterations': int64 array, 'learning_rate': float64 array (constant rates only),
        '<slot>/<i>': copy of slot array i, ...}."""
        state = {"iterations": np.array(self.iterations, dtype=np.int64)}
        if self._schedule is None:
            state["learning_rate"] = np.array(self._lr, dtype=np.float64)
        for name, arrays in self._slots.items():
            for i, a in enumerate(arrays):
                state[f"{name}/{i}"] = a.copy()
        return state

    def set_state(self, state):
        """Restore get_state()'s dict into this (built) optimizer: same kind of optimizer, same slot
        shapes. 'learning_rate' is optional and ignored when this optimizer uses a schedule."""
        if not self.built:
            raise ValueError(f"set_state needs a built optimizer: call build(variables) first "
                             f"({type(self).__name__} {self.name!r} is not built)")
        if not isinstance(state, dict):
            raise TypeError(f"state must be a dict of arrays, received {type(state).__name__}")
        expected = ["iterations"]
        for name, arrays in self._slots.items():
            expected.extend(f"{name}/{i}" for i in range(len(arrays)))
        missing = [k for k in expected if k not in state]
        unexpected = sorted(set(state) - set(expected) - {"learning_rate"})
        if missing or unexpected:
            parts = []
            if missing:
                parts.append(f"missing {', '.join(missing)}")
            if unexpected:
                parts.append(f"unexpected {', '.join(unexpected)}")
            raise ValueError(f"optimizer state does not match {type(self).__name__} built for "
                             f"{len(self._shapes)} variables: {'; '.join(parts)}")
        converted = {}
        for key in expected:
            a = np.asarray(state[key])
            if key == "iterations":
                if a.shape != () or a.dtype.kind not in "iu" or int(a) < 0:
                    raise ValueError(f"state['iterations'] must be a non-negative integer scalar, received {a!r}")
                continue
            name, i = key.rsplit("/", 1)
            slot = self._slots[name][int(i)]
            if a.shape != slot.shape:
                raise ValueError(f"state[{key!r}] has shape {a.shape} but the optimizer's slot has shape {slot.shape}")
            if a.dtype.kind != "f":
                raise ValueError(f"state[{key!r}] must be a floating-point array, received dtype {a.dtype.name}")
            converted[key] = a
        lr = None
        if "learning_rate" in state and self._schedule is None:
            lr = _nonneg(np.asarray(state["learning_rate"])[()], "state['learning_rate']")
        # everything validated: now write
        for key, a in converted.items():
            name, i = key.rsplit("/", 1)
            np.copyto(self._slots[name][int(i)], a, casting="unsafe")
        self.iterations = int(np.asarray(state["iterations"]))
        if lr is not None:
            self._lr = lr

    # ---- config --------------------------------------------------------------------------------
    def get_config(self):
        if self._schedule is None:
            lr = self._lr
        elif isinstance(self._schedule, LearningRateSchedule):
            lr = _serialize_schedule(self._schedule)
        else:
            lr = self.learning_rate
            warnings.warn(f"{type(self).__name__}.get_config: a plain callable learning-rate schedule cannot be "
                          f"serialized; the config records its current value {lr}", RuntimeWarning, stacklevel=2)
        return {"name": self.name, "learning_rate": lr, "clipnorm": self.clipnorm,
                "clipvalue": self.clipvalue, "global_clipnorm": self.global_clipnorm}

    @classmethod
    def from_config(cls, config):
        """Re-create an optimizer from get_config()'s dict (called on the concrete class), or from
        serialize()'s {'class_name', 'config'} dict (on any class, including Optimizer)."""
        if not isinstance(config, dict):
            raise TypeError(f"config must be a dict, received {type(config).__name__}")
        if "class_name" in config and "config" in config:
            return deserialize(config)
        if cls is Optimizer:
            raise ValueError("Optimizer.from_config needs {'class_name': ..., 'config': ...} (serialize()'s "
                             "output); a bare get_config() dict must go to its own class, e.g. Adam.from_config")
        config = dict(config)
        accepted = inspect.signature(cls.__init__).parameters
        for key, inert in _INERT_KERAS_KEYS.items():
            if key in config and key not in accepted:
                value = config.pop(key)
                if key in ("ema_momentum", "decay"):  # meaningless without use_ema / ignored by Keras 3
                    continue
                if value != inert:
                    raise ValueError(f"{cls.__name__}: Keras option {key}={value!r} is not supported by cnnc")
        lr = config.get("learning_rate")
        if isinstance(lr, dict):
            config["learning_rate"] = _deserialize_schedule(lr)
        return cls(**config)

    def __repr__(self):
        return f"{type(self).__name__}(name={self.name!r}, learning_rate={self.learning_rate!r})"


# --------------------------------------------------------------------------------------------------
# optimizers

class SGD(Optimizer):
    """Gradient descent with optional (Nesterov) momentum, Keras 3 rules:
    plain ``w -= lr*g``; momentum ``m = momentum*m - lr*g; w += m``;
    nesterov ``m = momentum*m - lr*g; w += momentum*m - lr*g``."""

    _default_name = "SGD"

    def __init__(self, learning_rate=0.01, momentum=0.0, nesterov=False, *, clipnorm=None, clipvalue=None,
                 global_clipnorm=None, name=None):
        super().__init__(learning_rate, clipnorm=clipnorm, clipvalue=clipvalue,
                         global_clipnorm=global_clipnorm, name=name)
        self.momentum = _unit(momentum, "momentum")
        self.nesterov = _flag(nesterov, "nesterov")

    def _slot_names(self):
        return ["momentum"] if self.momentum != 0 else []

    def _update(self, i, g, v, lr):
        t = v.dtype.type
        tmp = self._tmp(i)
        np.multiply(g, t(lr), out=tmp)                       # lr*g
        if self.momentum == 0:
            v -= tmp
            return
        m = self._slots["momentum"][i]
        m *= t(self.momentum)
        m -= tmp                                             # m = momentum*m - lr*g
        if self.nesterov:
            v -= tmp
            np.multiply(m, t(self.momentum), out=tmp)
            v += tmp                                         # w += momentum*m - lr*g
        else:
            v += m

    def _c_rule(self, lr):
        if type(self)._update is not SGD._update:
            return None
        t = np.float32
        if self.momentum == 0:
            return "sgd", (), {"lr": t(lr)}
        return "sgd", ("momentum",), {"lr": t(lr), "momentum": t(self.momentum), "nesterov": self.nesterov}

    def get_config(self):
        cfg = super().get_config()
        cfg.update(momentum=self.momentum, nesterov=self.nesterov)
        return cfg


class RMSprop(Optimizer):
    """RMSprop, Keras 3 rules: ``v = rho*v + (1-rho)*g^2``; (centered: ``mg = rho*mg + (1-rho)*g``,
    denominator ``v - mg^2 + eps``, else ``v + eps``); ``inc = lr*g/sqrt(denominator)``;
    momentum > 0: ``m = momentum*m + inc; w -= m``, else ``w -= inc``."""

    _default_name = "rmsprop"

    def __init__(self, learning_rate=0.001, rho=0.9, momentum=0.0, epsilon=1e-7, centered=False, *,
                 clipnorm=None, clipvalue=None, global_clipnorm=None, name=None):
        super().__init__(learning_rate, clipnorm=clipnorm, clipvalue=clipvalue,
                         global_clipnorm=global_clipnorm, name=name)
        self.rho = _unit(rho, "rho")
        self.momentum = _unit(momentum, "momentum")
        self.epsilon = _nonneg(epsilon, "epsilon")
        self.centered = _flag(centered, "centered")

    def _slot_names(self):
        names = ["velocity"]
        if self.momentum > 0:
            names.append("momentum")
        if self.centered:
            names.append("average_gradient")
        return names

    def _update(self, i, g, v, lr):
        t = v.dtype.type
        tmp = self._tmp(i)
        rho = t(self.rho)
        one_m_rho = t(1.0 - self.rho)
        vel = self._slots["velocity"][i]
        vel *= rho
        np.square(g, out=tmp)
        tmp *= one_m_rho
        vel += tmp                                           # v = rho*v + (1-rho)*g^2
        if self.centered:
            ag = self._slots["average_gradient"][i]
            ag *= rho
            np.multiply(g, one_m_rho, out=tmp)
            ag += tmp                                        # mg = rho*mg + (1-rho)*g
            np.square(ag, out=tmp)
            np.subtract(vel, tmp, out=tmp)
            tmp += t(self.epsilon)                           # v - mg^2 + eps
        else:
            np.add(vel, t(self.epsilon), out=tmp)            # v + eps
        np.sqrt(tmp, out=tmp)
        np.divide(g, tmp, out=tmp)
        tmp *= t(lr)                                         # inc = lr*g/sqrt(denominator)
        if self.momentum > 0:
            m = self._slots["momentum"][i]
            m *= t(self.momentum)
            m += tmp
            v -= m
        else:
            v -= tmp

    def _c_rule(self, lr):
        if type(self)._update is not RMSprop._update:
            return None
        t = np.float32
        slots = ("velocity", "momentum" if self.momentum > 0 else None, "average_gradient" if self.centered else None)
        return "rmsprop", slots, {"lr": t(lr), "rho": t(self.rho), "one_minus_rho": t(1.0 - self.rho),
                                  "epsilon": t(self.epsilon), "momentum": t(self.momentum)}

    def get_config(self):
        cfg = super().get_config()
        cfg.update(rho=self.rho, momentum=self.momentum, epsilon=self.epsilon, centered=self.centered)
        return cfg


class Adam(Optimizer):
    """Adam, Keras 3 rules: at step t = iterations+1, ``alpha = lr*sqrt(1-beta_2^t)/(1-beta_1^t)``;
    ``m += (g-m)*(1-beta_1)``; ``v += (g^2-v)*(1-beta_2)``; (amsgrad: ``vhat = max(vhat, v)``, used for
    v); ``w -= alpha*m/(sqrt(v)+epsilon)``."""

    _default_name = "adam"

    def __init__(self, learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7, amsgrad=False, *,
                 clipnorm=None, clipvalue=None, global_clipnorm=None, name=None):
        super().__init__(learning_rate, clipnorm=clipnorm, clipvalue=clipvalue,
                         global_clipnorm=global_clipnorm, name=name)
        self.beta_1 = _unit(beta_1, "beta_1", upper_open=True)
        self.beta_2 = _unit(beta_2, "beta_2", upper_open=True)
        self.epsilon = _nonneg(epsilon, "epsilon")
        self.amsgrad = _flag(amsgrad, "amsgrad")

    def _slot_names(self):
        return ["momentum", "velocity"] + (["velocity_hat"] if self.amsgrad else [])

    def _update(self, i, g, v, lr):
        t = v.dtype.type
        step = self.iterations + 1
        alpha = lr * math.sqrt(1.0 - self.beta_2 ** step) / (1.0 - self.beta_1 ** step)
        tmp = self._tmp(i)
        m = self._slots["momentum"][i]
        vel = self._slots["velocity"][i]
        np.subtract(g, m, out=tmp)
        tmp *= t(1.0 - self.beta_1)
        m += tmp                                             # m += (g-m)(1-b1)
        np.square(g, out=tmp)
        tmp -= vel
        tmp *= t(1.0 - self.beta_2)
        vel += tmp                                           # v += (g^2-v)(1-b2)
        if self.amsgrad:
            vhat = self._slots["velocity_hat"][i]
            np.maximum(vhat, vel, out=vhat)
            vel = vhat
        np.sqrt(vel, out=tmp)
        tmp += t(self.epsilon)
        np.divide(m, tmp, out=tmp)
        tmp *= t(alpha)
        v -= tmp                                             # w -= alpha*m/(sqrt(v)+eps)

    def _c_rule(self, lr):
        if type(self)._update is not Adam._update:
            return None
        return self._adam_rule(lr)

    def _adam_rule(self, lr, weight_decay=None):
        t = np.float32
        step = self.iterations + 1
        alpha = lr * math.sqrt(1.0 - self.beta_2 ** step) / (1.0 - self.beta_1 ** step)
        slots = ("momentum", "velocity", "velocity_hat" if self.amsgrad else None)
        return "adam", slots, {"lr": t(alpha), "one_minus_beta1": t(1.0 - self.beta_1),
                               "one_minus_beta2": t(1.0 - self.beta_2), "epsilon": t(self.epsilon),
                               "weight_decay": weight_decay}

    def get_config(self):
        cfg = super().get_config()
        cfg.update(beta_1=self.beta_1, beta_2=self.beta_2, epsilon=self.epsilon, amsgrad=self.amsgrad)
        return cfg


class AdamW(Adam):
    """Adam with decoupled weight decay (Keras 3): ``w -= w*weight_decay*lr`` first, then the Adam
    update. Decay applies to every variable given a gradient."""

    _default_name = "adamw"

    def __init__(self, learning_rate=0.001, weight_decay=0.004, beta_1=0.9, beta_2=0.999, epsilon=1e-7,
                 amsgrad=False, *, clipnorm=None, clipvalue=None, global_clipnorm=None, name=None):
        super().__init__(learning_rate, beta_1=beta_1, beta_2=beta_2, epsilon=epsilon, amsgrad=amsgrad,
                         clipnorm=clipnorm, clipvalue=clipvalue, global_clipnorm=global_clipnorm, name=name)
        if weight_decay is None:
            raise ValueError("weight_decay must be a float >= 0 for AdamW, received weight_decay=None")
        self.weight_decay = _nonneg(weight_decay, "weight_decay")

    def _update(self, i, g, v, lr):
        if self.weight_decay:
            tmp = self._tmp(i)
            np.multiply(v, v.dtype.type(self.weight_decay * lr), out=tmp)
            v -= tmp
        super()._update(i, g, v, lr)

    def _c_rule(self, lr):
        if type(self)._update is not AdamW._update:
            return None
        return self._adam_rule(lr, np.float32(self.weight_decay * lr) if self.weight_decay else None)

    def get_config(self):
        cfg = super().get_config()
        cfg["weight_decay"] = self.weight_decay
        return cfg


class Adagrad(Optimizer):
    """Adagrad, Keras 3 rules: ``acc += g^2``; ``w -= lr*g/sqrt(acc+epsilon)``; the accumulator
    starts at ``initial_accumulator_value``."""

    _default_name = "adagrad"

    def __init__(self, learning_rate=0.001, initial_accumulator_value=0.1, epsilon=1e-7, *, clipnorm=None,
                 clipvalue=None, global_clipnorm=None, name=None):
        super().__init__(learning_rate, clipnorm=clipnorm, clipvalue=clipvalue,
                         global_clipnorm=global_clipnorm, name=name)
        self.initial_accumulator_value = _nonneg(initial_accumulator_value, "initial_accumulator_value")
        self.epsilon = _nonneg(epsilon, "epsilon")

    def _slot_names(self):
        return ["accumulator"]

    def _slot_init(self, name):
        return self.initial_accumulator_value

    def _update(self, i, g, v, lr):
        t = v.dtype.type
        tmp = self._tmp(i)
        acc = self._slots["accumulator"][i]
        np.square(g, out=tmp)
        acc += tmp                                           # acc += g^2
        np.add(acc, t(self.epsilon), out=tmp)
        np.sqrt(tmp, out=tmp)
        np.divide(g, tmp, out=tmp)
        tmp *= t(lr)
        v -= tmp                                             # w -= lr*g/sqrt(acc+eps)

    def _c_rule(self, lr):
        if type(self)._update is not Adagrad._update:
            return None
        t = np.float32
        return "adagrad", ("accumulator",), {"lr": t(lr), "epsilon": t(self.epsilon)}

    def get_config(self):
        cfg = super().get_config()
        cfg.update(initial_accumulator_value=self.initial_accumulator_value, epsilon=self.epsilon)
        return cfg


# --------------------------------------------------------------------------------------------------
# lookup and serialization

_REGISTRY = Registry("optimizer", Optimizer, [SGD, RMSprop, Adam, AdamW, Adagrad],
                     {"sgd": SGD, "rmsprop": RMSprop, "adam": Adam, "adamw": AdamW, "adagrad": Adagrad})
serialize = _REGISTRY.serialize
deserialize = _REGISTRY.deserialize


def get(identifier):
    """Resolve an optimizer: a name ('sgd', 'rmsprop', 'adam', 'adamw', 'adagrad'; any case) giving
    one with default arguments, an Optimizer instance (returned as is) or subclass, or a config dict."""
    return _REGISTRY.get(identifier)
