"""Name lookup and serialization shared by initializers, regularizers, optimizers, losses and metrics.

Each of those modules describes its objects once (a base class, the concrete classes, the string names
users may write) and gets get / serialize / deserialize with the same rules and error messages."""


class Configurable:
    """repr, equality and hashing from get_config(), for objects described by their config."""

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"

    def __eq__(self, other):
        return type(self) is type(other) and self.get_config() == other.get_config()

    def __hash__(self):
        return hash((type(self).__name__, tuple(sorted(self.get_config().items()))))


class Registry:
    """kind: the word used in messages ('optimizer'); base: the common base class; classes: the concrete
    classes (addressable by their exact class names); names: lowercase string -> zero-argument factory
    (a class, or a function building a configured instance); choices: how the error message lists the
    accepted names (default: the lowercase names)."""

    def __init__(self, kind, base, classes, names, *, aliases=None, choices=None, allow_none=False,
                 allow_callable=False, abstract=()):
        self.kind = kind
        self.abstract = (base,) + tuple(abstract)  # subclasses that cannot be built without arguments
        self.base = base
        self.classes = {c.__name__: c for c in classes}
        self.names = dict(names)
        # lowercase name -> class, for configs' class_name (any case of a class name works too)
        self.aliases = {c.__name__.lower(): c for c in classes}
        self.aliases.update({k: v for k, v in self.names.items() if isinstance(v, type)})
        self.aliases.update(aliases or {})
        self._choices = choices
        self.allow_none = allow_none
        self.allow_callable = allow_callable

    def choices(self):
        return self._choices or ", ".join(sorted(self.names))

    def error(self, identifier, extra=""):
        return ValueError(f"unknown {self.kind} {identifier!r}; choose one of {self.choices()}{extra}")

    def class_for(self, name):
        """The class named by a config's class_name (exact class name, or a registered lowercase name)."""
        cls = self.classes.get(name) or self.aliases.get(str(name).lower())
        if cls is None:
            raise self.error(name)
        return cls

    def serialize(self, obj):
        """{'class_name': ..., 'config': ...}."""
        if obj is None and self.allow_none:
            return None
        if not isinstance(obj, self.base):
            raise TypeError(f"serialize expects a {self.base.__name__}, received {type(obj).__name__}")
        return {"class_name": type(obj).__name__, "config": obj.get_config()}

    def deserialize(self, config):
        """An object from serialize()'s dict, or from a name string."""
        if config is None and self.allow_none:
            return None
        if isinstance(config, str):
            return self.get(config)
        if not isinstance(config, dict) or "class_name" not in config:
            raise ValueError(f"a {self.kind} config must be a dict with 'class_name' and 'config', "
                             f"received {config!r}")
        return self.class_for(config["class_name"]).from_config(config.get("config") or {})

    def get(self, identifier):
        """None (when allowed), an instance (as is), a name, a config dict, a concrete subclass, or a
        callable (when allowed, as is)."""
        if identifier is None:
            if self.allow_none:
                return None
            raise ValueError(f"{self.kind} must not be None; choose one of {self.choices()}")
        if isinstance(identifier, self.base):
            return identifier
        if isinstance(identifier, str):
            make = self.names.get(identifier.lower()) or self.classes.get(identifier)
            if make is None:
                raise self.error(identifier)
            return make()
        if isinstance(identifier, dict):
            return self.deserialize(identifier)
        if isinstance(identifier, type) and issubclass(identifier, self.base) and identifier not in self.abstract:
            return identifier()
        if self.allow_callable and callable(identifier) and not isinstance(identifier, type):
            return identifier
        raise self.error(identifier)
