"""fluorojax: differentiable X-ray simulation in pure JAX."""
