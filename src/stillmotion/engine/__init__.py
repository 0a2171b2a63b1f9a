"""The animation engine: pure computation on frames and landmarks.

It knows nothing of HTTP, queues or storage. ``pipeline.animate`` is its one entry point for files;
``media`` is its only door to the files it is given and writes; between the passes it keeps its
logs in anonymous temporary files (``disk_log``).
"""
