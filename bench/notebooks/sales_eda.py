# %% [markdown]
# # Monthly sales: exploratory analysis
# Load the orders export, clean it, and look at revenue by region and product line.

# %%
import numpy as np
import pandas as pd
import matplotlib.pyplot as plt

pd.set_option("display.max_columns", 20)

# %%
rng = np.random.default_rng(42)
n = 5000
orders = pd.DataFrame({
    "order_id": np.arange(n),
    "date": pd.to_datetime("2024-01-01") + pd.to_timedelta(rng.integers(0, 365, n), unit="D"),
    "region": rng.choice(["north", "south", "east", "west"], n),
    "product": rng.choice(["laptop", "phone", "tablet", "monitor"], n, p=[0.3, 0.4, 0.2, 0.1]),
    "units": rng.integers(1, 6, n),
    "unit_price": rng.normal(400, 120, n).round(2),
})
orders.head()

# %% [markdown]
# ## Cleaning
# Negative prices come from refunds; drop them and compute revenue.

# %%
orders = orders[orders["unit_price"] > 0].copy()
orders["revenue"] = orders["units"] * orders["unit_price"]
orders["month"] = orders["date"].dt.to_period("M")
print(orders.shape)
orders.describe()

# %%
by_region = orders.groupby("region")["revenue"].agg(["sum", "mean", "count"])
by_region = by_region.sort_values("sum", ascending=False)
by_region

# %%
monthly = orders.pivot_table(index="month", columns="product", values="revenue", aggfunc="sum")
monthly = monthly.fillna(0)
fig, ax = plt.subplots(figsize=(10, 4))
monthly.plot(ax=ax)
ax.set_title("Revenue by product and month")
ax.set_ylabel("revenue")
plt.show()

# %%
top = orders.nlargest(10, "revenue")[["date", "region", "product", "revenue"]]
share = orders.groupby("product")["revenue"].sum() / orders["revenue"].sum()
print(share.round(3))
top
