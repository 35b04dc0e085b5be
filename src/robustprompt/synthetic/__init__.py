"""The little world behind robustprompt-tiny and the first testbeds: Fashion-MNIST (Debian's package),
generated shapes, colours, letters and digits, and their caption vocabulary. Both `pretrain` (the
pretraining stream) and `data` (the fashion-mnist / shapes / colors testbeds) read it."""
