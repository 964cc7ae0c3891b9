"""Package version; its major must equal the loaded library's ABI major."""
__version__ = "0.1.0"
ABI_MAJOR = int(__version__.split(".")[0])
