"""A text progress bar (the engine behind cnnc.callbacks.ProgbarLogger).

Two display styles:

* live (verbose=1 on a terminal, or in Jupyter): one line redrawn in place with '\\r',
  ``  37/938 [>.............................] - ETA: 12s - loss: 0.4123 - 5123 samples/s``; the final
  update (``finalize=True``) shows the total time and per-step time instead of the ETA and ends the line;
* summary (verbose=2, or verbose=1 when the output is not a terminal): nothing until the final update,
  which prints exactly one line ``<prefix> - 12s - loss: 0.4123 - 5123 samples/s`` where the prefix is
  ``summary_prefix`` (e.g. ``Epoch 3/5``) or ``current/target``.

verbose=0 prints nothing.
"""
import math
import numbers
import os
import sys
import time

import numpy as np

__all__ = ["Progbar", "is_live_output", "format_eta", "format_duration", "format_value"]


def is_live_output(file):
    """True when `file` can show a bar redrawn in place: a terminal or a Jupyter kernel."""
    isatty = getattr(file, "isatty", None)
    try:
        if isatty is not None and isatty():
            return True
    except (ValueError, OSError):  # closed or detached stream
        return False
    return "ipykernel" in sys.modules or "PYCHARM_HOSTED" in os.environ


def format_eta(seconds):
    seconds = max(0, int(round(seconds)))
    if seconds >= 3600:
        return "%d:%02d:%02d" % (seconds // 3600, (seconds % 3600) // 60, seconds % 60)
    if seconds >= 60:
        return "%d:%02d" % (seconds // 60, seconds % 60)
    return "%ds" % seconds


def format_duration(seconds):
    """Elapsed time: '1:02:03', '2:05', '12s', '3.4s', '250ms'."""
    if seconds >= 60:
        return format_eta(seconds)
    if seconds >= 9.95:
        return "%.0fs" % seconds
    if seconds >= 1:
        return "%.1fs" % seconds
    return "%.0fms" % (seconds * 1e3)


def _format_per_unit(seconds, unit_name):
    if seconds >= 1 or seconds == 0:
        return "%.0fs/%s" % (seconds, unit_name)
    if seconds >= 1e-3:
        return "%.0fms/%s" % (seconds * 1e3, unit_name)
    return "%.0fus/%s" % (seconds * 1e6, unit_name)


def format_value(value):
    """Keras's metric formatting: 4 decimals, scientific notation for tiny magnitudes."""
    if isinstance(value, np.ndarray) and value.ndim == 0:
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return str(value)
    value = float(value)
    if math.isnan(value) or math.isinf(value) or value == 0 or abs(value) > 1e-3:
        return "%.4f" % value
    return "%.4e" % value


def _format_rate(samples_per_second):
    if samples_per_second >= 100:
        return "%.0f samples/s" % samples_per_second
    return "%.1f samples/s" % samples_per_second


class Progbar:
    """Progress bar.

    Args:
        target: total number of steps expected, None if unknown.
        width: bar width in characters.
        verbose: 0 (silent), 1 (live bar on a terminal, else one summary line), 2 (one summary line).
        interval: minimum seconds between two redraws of the live bar.
        unit_name: name of a step, shown in the per-step time ('13ms/step').
        stateful_metrics: names of values shown as given; any other value is averaged over the steps
            of the updates (weighted by the number of steps each update advanced).
        file: the stream written to; None means sys.stdout at construction time.
        summary_prefix: what starts the summary line; None means 'current/target'.
        dynamic: force the live (True) or summary (False) style for verbose=1; None detects it.
    """

    def __init__(self, target, width=30, verbose=1, interval=0.05, unit_name="step",
                 stateful_metrics=None, file=None, summary_prefix=None, dynamic=None):
        self.target = target
        self.width = width
        self.verbose = verbose
        self.interval = interval
        self.unit_name = unit_name
        self.stateful_metrics = set(stateful_metrics) if stateful_metrics else set()
        self.file = sys.stdout if file is None else file
        self.summary_prefix = summary_prefix
        self._dynamic = is_live_output(self.file) if dynamic is None else bool(dynamic)
        self._values = {}          # name -> [weighted sum, weight] or [value, 1] for stateful ones
        self._values_order = []
        self._seen_so_far = 0
        self._start = time.perf_counter()
        self._last_update = None
        self._prev_len = 0
        self._finalized = False

    @property
    def live(self):
        return self.verbose == 1 and self._dynamic

    def _write(self, text):
        self.file.write(text)
        flush = getattr(self.file, "flush", None)
        if flush is not None:
            flush()

    def _accumulate(self, current, values, finalize):
        for name, value in values or ():
            if name not in self._values_order:
                self._values_order.append(name)
            if name in self.stateful_metrics or finalize and self._seen_so_far >= current:
                self._values[name] = [value, 1]
                continue
            weight = max(current - self._seen_so_far, 1)
            try:
                contribution = float(value) * weight
            except (TypeError, ValueError):  # not a number: show it as is
                self._values[name] = [value, 1]
                continue
            if name not in self._values or not isinstance(self._values[name][0], float):
                self._values[name] = [contribution, weight]
            else:
                self._values[name][0] += contribution
                self._values[name][1] += weight

    def _metrics_text(self):
        parts = []
        for name in self._values_order:
            total, weight = self._values[name]
            value = total / weight if weight != 1 and isinstance(total, float) else total
            parts.append(" - %s: %s" % (name, format_value(value)))
        return "".join(parts)

    def update(self, current, values=None, finalize=None, samples=None):
        """Move the bar to step `current`.

        values: (name, value) pairs or a dict; samples: samples seen since the bar started (adds
        'N samples/s'); finalize: the last update (defaults to current >= target).
        """
        if isinstance(values, dict):
            values = list(values.items())
        if finalize is None:
            finalize = self.target is not None and current >= self.target
        self._accumulate(current, values, finalize)
        self._seen_so_far = current
        if self.verbose == 0 or self._finalized:
            return
        now = time.perf_counter()
        elapsed = now - self._start
        rate = ""
        if samples is not None and elapsed > 0:
            rate = " - " + _format_rate(samples / elapsed)

        if self.live:
            if not finalize and self._last_update is not None and now - self._last_update < self.interval:
                return
            self._last_update = now
            line = self._bar(current)
            if finalize or (self.target is not None and current >= self.target):
                per_unit = elapsed / current if current else 0.0
                line += " - %s %s" % (format_duration(elapsed), _format_per_unit(per_unit, self.unit_name))
            elif self.target is not None and current > 0:
                line += " - ETA: %s" % format_eta(elapsed / current * (self.target - current))
            else:
                line += " - %s" % format_duration(elapsed)
            line += self._metrics_text() + rate
            pad = " " * max(0, self._prev_len - len(line))
            self._prev_len = len(line)
            self._write("\r" + line + pad + ("\n" if finalize else ""))
        elif finalize:
            if self.summary_prefix is not None:
                prefix = self.summary_prefix
            elif self.target is not None:
                prefix = "%d/%d" % (current, self.target)
            else:
                prefix = "%d" % current
            self._write(prefix + " - " + format_duration(elapsed) + self._metrics_text() + rate + "\n")
        if finalize:
            self._finalized = True

    def add(self, n, values=None):
        self.update(self._seen_so_far + n, values)

    def _bar(self, current):
        if self.target is None:
            return "%7d/Unknown" % current
        digits = len(str(self.target))
        text = "%*d/%d [" % (digits, current, self.target)
        progress = min(max(current / self.target, 0.0), 1.0) if self.target > 0 else 1.0
        filled = int(self.width * progress)
        if filled > 0:
            text += "=" * (filled - 1) + (">" if current < self.target else "=")
        text += "." * (self.width - filled) + "]"
        return text
