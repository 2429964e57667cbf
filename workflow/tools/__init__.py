"""Developer tools run by the Makefile (lint); not imported by the Lambda functions."""
