"""One module per `nstage` sub-command; each has `register(subparsers)` setting `func`."""
