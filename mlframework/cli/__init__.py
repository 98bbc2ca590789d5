"""The ``mlframework`` command: a thin click layer over the library (the group is assembled in :mod:`.main`)."""
