"""`topup`: the command line for publishers (place and follow orders) and operators."""
