# %% [markdown]
# # Sensor readings: resampling and anomalies
# Hourly temperature from three sensors; smooth it, resample it, flag outliers.

# %%
import numpy as np
import pandas as pd
import matplotlib.pyplot as plt

# %%
index = pd.date_range("2024-03-01", periods=24 * 60, freq="h")
rng = np.random.default_rng(7)
daily = 5 * np.sin(2 * np.pi * index.hour / 24)
readings = pd.DataFrame({
    name: 20 + daily + rng.normal(0, 1.2, len(index)) + offset
    for name, offset in [("sensor_a", 0.0), ("sensor_b", 1.5), ("sensor_c", -0.8)]
}, index=index)
readings.iloc[200:203, 1] = 45.0
readings.head()

# %% [markdown]
# ## Smoothing

# %%
rolling = readings.rolling("6h").mean()
daily_mean = readings.resample("D").mean()
fig, ax = plt.subplots(figsize=(10, 4))
rolling["sensor_a"].plot(ax=ax, label="6h mean")
daily_mean["sensor_a"].plot(ax=ax, marker="o", label="daily mean")
ax.legend()
plt.show()

# %%
zscores = (readings - readings.mean()) / readings.std()
anomalies = zscores.abs() > 4
print(anomalies.sum())
readings[anomalies.any(axis=1)]

# %%
def clean(series, threshold=4.0):
    z = (series - series.mean()) / series.std()
    return series.mask(z.abs() > threshold).interpolate()


cleaned = readings.apply(clean)
weekly = cleaned.resample("W").agg(["mean", "min", "max"])
weekly.round(2)
