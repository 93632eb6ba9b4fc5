"""`python -m qimeng_serve ...`: the `qimeng-serve` command for machines without the console script."""

from qimeng_serve.cli import app

app()
