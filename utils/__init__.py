"""The library beside model/: data, training, evaluation, label-free selection, runtime, and the
command line's parsing. It never reads sys.argv and never imports a script."""
