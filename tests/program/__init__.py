"""The event program: the seed conference loads, invalid programs are refused by place."""
