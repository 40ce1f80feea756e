"""Denoising-auto-encoder pieces (Bengio 2014 §2, §7): corruption, the short
loop, sampling chains, nearest neighbours, Parzen windows, analytic priors."""
