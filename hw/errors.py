"""The compiler's errors: each a one-line message naming the cause (the CLI prints it, no traceback)."""


class CompileError(ValueError):
    pass


class FoldingError(CompileError):
    pass


class FitError(CompileError):
    pass
