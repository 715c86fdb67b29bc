"""swapctl, the command line: the composition root of the product."""
