"""What leaves the build machine: ``artifact.py`` (the artifact folder: writing it, verifying
it, running it with TVM's runtime alone) and ``bundle.py`` (artifacts plus TVM's runtime, for
machines without nindsl)."""
