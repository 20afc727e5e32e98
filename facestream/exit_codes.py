"""The documented exit codes of every facestream command (README, `facestream --help`)."""

__all__ = ["EXIT_INPUT", "EXIT_PARTIAL", "EXIT_REFUSED", "EXIT_UNREACHABLE"]

EXIT_INPUT = 2  # bad input or configuration
EXIT_UNREACHABLE = 3  # Redis could not be reached
EXIT_REFUSED = 4  # Redis refused the credentials or a command
EXIT_PARTIAL = 5  # `status`: some node(s) unreachable, the report shows the rest
