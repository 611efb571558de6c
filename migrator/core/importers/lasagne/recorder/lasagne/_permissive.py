def permissive_getattr(modname):
    """A PEP 562 ``__getattr__`` giving a Theano placeholder for any public name."""
    def __getattr__(name):
        if name.startswith("__"):
            raise AttributeError(name)
        from theano import Sym
        return Sym("%s.%s" % (modname, name))
    return __getattr__
