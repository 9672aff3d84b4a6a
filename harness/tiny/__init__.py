"""The offline world behind the embedded default: synthetic problems, a tiny local student, an oracle teacher."""
